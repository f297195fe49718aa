#!/usr/bin/env python3
"""The REST API of a running fotagwd over a seeded database of 1,000 devices: every endpoint
checked against docs/openapi.json, pagination across all devices, filters agreeing with
SQLite, auth failures (logged), bad requests, limits, and token-file handling at start.

usage: test_api.py FOTAGWD
"""
import json
import os
import sqlite3
import sys
import tempfile
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apitest import (ACTIVE, TOKEN, Daemon, Fail, OpenAPI, address, check, free_port,  # noqa: E402
                     raw_request, request, seed)

FOTAGWD = sys.argv[1]
N = 1000
AUTH = {"Authorization": "Bearer " + TOKEN}


def db_scalar(db, sql, *args):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, args).fetchone()[0]
    finally:
        con.close()


def db_states(db):
    """Device state per address as the API defines it (job for r2, else idle)."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT d.address, COALESCE(j.state, 'idle') FROM devices d LEFT JOIN"
                           " jobs j ON j.address = d.address AND j.release_id = 'r2'"
                           " ORDER BY d.address").fetchall()
    finally:
        con.close()
    return dict(rows)


def test_endpoints(d, api):
    def get(path, want=200):
        st, h, body = request(d.url, "GET", path)
        check(st == want, f"GET {path}: {st}, want {want}: {body[:300]!r}")
        return api.check_response("GET", path, st, h, body)

    h = get("/v1/health")
    check(h["status"] == "ok" and h["database"]["state"] == "ok", f"health {h}")
    check(h["release"]["id"] == "r2" and h["rollout_halted"] is False, f"health {h}")
    check(h["version"] and h["uptime_s"] >= 0, "health lacks the daemon's version/uptime")
    check(h["adapter_state"] == "disabled", f"[ble] enabled = false: {h['adapter_state']}")
    ad = get("/v1/adapters")
    check(ad == {"adapters": []}, f"[ble] enabled = false: adapters {ad}")

    r = get("/v1/releases")
    check(r["current"] == "r2", f"current {r['current']}")
    check([x["id"] for x in r["releases"]] == ["r3", "r2", "r1"], "release order")
    check(r["releases"][1]["groups"] == ["lab", "field"], "groups parsed")

    ro = get("/v1/rollout")
    states = db_states(d.db)
    for st in set(states.values()):
        want = sum(1 for v in states.values() if v == st)
        check(ro["counts"][st] == want, f"rollout count {st}: {ro['counts'][st]} != {want}")
    check(ro["total_devices"] == N, "total devices")
    failed = sum(1 for v in states.values() if v in ("failed", "reverted"))
    finished = failed + sum(1 for v in states.values() if v == "done")
    check(abs(ro["failure_rate"] - failed / finished) < 1e-9, "failure rate")
    check(ro["max_failure_rate"] == 0.25, "policy max failure rate")
    check(ro["canary"]["total"] == db_scalar(d.db, "SELECT count(*) FROM jobs WHERE canary = 1"),
          "canary total")
    check(ro["in_progress"] == sum(1 for v in states.values() if v in ACTIVE), "in progress")
    reasons = {x["reason"]: x["count"] for x in ro["failure_reasons"]}
    check(reasons.get("revert seen") == db_scalar(
        d.db, "SELECT count(*) FROM jobs WHERE state = 'reverted'"), f"reasons {reasons}")
    check(len(ro["failures"]) == 20, "failures capped at 20")

    one = address(3)  # job state uploading (3 % 14)
    dev = get("/v1/devices/" + urllib.parse.quote(one, safe=""))
    check(dev["address"] == one and dev["state"] == states[one], f"device {dev}")
    check(dev["images"][0]["hash"] == "%064x" % 3, "image hash")
    check(dev["events"][0]["to"] == states[one], "last event")
    check("progress" not in dev["job"], "progress made up without a fleet")
    get("/v1/devices/" + one)  # unencoded ':' works as well
    get("/v1/devices/C0:00:00:00:FF:FF", 404)
    get("/v1/devices/bad%20addr", 400)

    ev = get("/v1/events?limit=5")
    n_events = db_scalar(d.db, "SELECT count(*) FROM events")
    check(len(ev["events"]) == min(5, n_events), f"{len(ev['events'])} recent events")
    newest = db_scalar(d.db, "SELECT max(id) FROM events")
    check(not ev["events"] or ev["events"][0]["id"] == newest, "events newest first")
    get("/v1/events?limit=0", 400)

    m = get("/metrics")
    per_state = {}
    for line in m.splitlines():
        if line.startswith("fotagw_devices{"):
            st = line.split('"')[1]
            per_state[st] = int(line.rsplit(" ", 1)[1])
    check(sum(per_state.values()) == N, f"metrics devices sum {sum(per_state.values())}")
    check(per_state["idle"] == N // 10, "metrics idle")
    check("fotagw_rollout_halted 0" in m, "metrics halted")
    reverted = db_scalar(d.db, "SELECT count(*) FROM jobs WHERE state = 'reverted'")
    # Free-text reasons stay in /v1/rollout; the metric has fixed labels (issue #18).
    check("reason=" not in "".join(x for x in m.splitlines() if x.startswith("fotagw_job_failures{")),
          "metrics failure labels are fixed")
    check(sum(int(x.rsplit(" ", 1)[1]) for x in m.splitlines()
              if x.startswith('fotagw_job_failures{outcome="reverted",')) == reverted,
          "metrics failures by outcome")
    for line in m.splitlines():
        check(line.startswith("#") or len(line.rsplit(" ", 1)) == 2, f"bad metric line {line}")


def test_pagination(d, api):
    want = sorted(address(i) for i in range(N))
    states = db_states(d.db)
    for limit in (None, 7, 1000):
        got, cursor, pages = [], None, 0
        while True:
            q = {}
            if limit:
                q["limit"] = limit
            if cursor:
                q["cursor"] = cursor
            path = "/v1/devices" + ("?" + urllib.parse.urlencode(q) if q else "")
            st, h, body = request(d.url, "GET", path)
            page = api.check_response("GET", path, st, h, body)
            check(st == 200, f"{path}: {st}")
            check(len(page["devices"]) <= (limit or 100), "page larger than limit")
            for dev in page["devices"]:
                check(dev["state"] == states[dev["address"]], f"state of {dev['address']}")
            got += [x["address"] for x in page["devices"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
            check(pages < 2000, "pagination does not end")
        check(got == want, f"limit {limit}: {len(got)} addresses, order or set differs")
        check(pages == -(-N // (limit or 100)), f"limit {limit}: {pages} pages")

    # Filters agree with SQLite.
    for q, sql in [
        ("state=failed", "SELECT count(*) FROM jobs WHERE release_id='r2' AND state='failed'"),
        ("state=failed,reverted", "SELECT count(*) FROM jobs WHERE release_id='r2' AND "
                                  "state IN ('failed','reverted')"),
        ("state=idle", "SELECT count(*) FROM devices WHERE address NOT IN "
                       "(SELECT address FROM jobs WHERE release_id='r2')"),
        ("group=north", "SELECT count(*) FROM devices WHERE grp='north'"),
        ("group=lab&state=done", "SELECT count(*) FROM devices d JOIN jobs j ON "
                                 "j.address=d.address AND j.release_id='r2' "
                                 "WHERE grp='lab' AND state='done'"),
        ("release=r1", "SELECT count(*) FROM jobs WHERE release_id='r1'"),
    ]:
        path = f"/v1/devices?limit=1000&{q}"
        st, h, body = request(d.url, "GET", path)
        page = api.check_response("GET", path, st, h, body)
        want_n = db_scalar(d.db, sql)
        check(len(page["devices"]) == want_n, f"{q}: {len(page['devices'])} != {want_n}")


def test_auth(d, api):
    def post(path, headers=None, body=None, want=None):
        st, h, raw = request(d.url, "POST", path, body=body, headers=headers or {})
        v = api.check_response("POST", path, st, h, raw)
        check(want is None or st == want, f"POST {path}: {st}, want {want}: {raw[:200]!r}")
        return st, h, v

    for path in ("/v1/rollout/pause", "/v1/rollout/resume",
                 "/v1/devices/" + address(1) + "/retry"):
        st, h, v = post(path, want=401)
        check(v["error"] == "unauthorized", "error code")
        check(h.get("WWW-Authenticate", "").startswith("Bearer"), "no challenge header")
        post(path, {"Authorization": "Bearer wrong-token-0123456789"}, want=401)
        post(path, {"Authorization": "Bearer " + TOKEN + "x"}, want=401)
        post(path, {"Authorization": "Basic " + TOKEN}, want=401)
    log = d.read_log()
    check(log.count("event: api-unauthorized") >= 12, "refusals not logged")
    check(TOKEN not in log, "the token leaked into the log")

    # With the right token, actions reach the fleet, which has no release to act on (the
    # seeded releases have no bundle in its cache): 409, not faked.
    _, _, v = post("/v1/rollout/pause", AUTH, want=409)
    check(v["error"] == "conflict", "pause without a current release")
    post("/v1/rollout/resume", AUTH, want=409)
    post("/v1/devices/" + address(1) + "/retry", AUTH, want=409)
    post("/v1/devices/C0:00:00:00:FF:FF/retry", AUTH, want=404)
    # Bodies are checked before the action.
    post("/v1/rollout/pause", dict(AUTH, **{"Content-Type": "application/json"}), b"{bad", 400)
    post("/v1/rollout/pause", AUTH, b'{"reason": 1}', 400)
    post("/v1/rollout/pause", AUTH, b'{"reason": "x", "extra": 1}', 400)
    post("/v1/rollout/pause", AUTH, b'{"reason": "storm"}', 409)


def test_enrollment(d, api):
    """Enrol, import and forget through the running daemon (its fleet behind the provider)."""
    def call(method, path, headers=None, body=None, want=None):
        st, h, raw = request(d.url, method, path, body=body, headers=headers or {})
        v = api.check_response(method, path, st, h, raw)
        check(want is None or st == want, f"{method} {path}: {st}, want {want}: {raw[:300]!r}")
        return v

    new1, new2 = "C0:00:00:00:FE:01", "C0:00:00:00:FE:02"
    csv = dict(AUTH, **{"Content-Type": "text/csv"})
    call("POST", "/v1/devices/import", {"Content-Type": "text/csv"}, b"address\n" +
         new1.encode(), 401)
    call("POST", f"/v1/devices/{new1}/enroll", None, b"{}", 401)
    call("DELETE", f"/v1/devices/{new1}", None, None, 401)
    v = call("POST", "/v1/devices/import", csv,
             f"address,passkey\n{new1},777777\n{new2},7777\n{new1},\n".encode(), 400)
    check(v["bad_lines"] == 2 and v["errors"] == [
        "line 3: passkey must be six digits", "line 4: the same address as line 2"],
        f"one error per bad line: {v['errors']}")
    call("GET", f"/v1/devices/{new1}", None, None, 404)  # all or nothing
    v = call("POST", "/v1/devices/import", csv,
             f"address,passkey,label\n{new1},777777,a\n{new2.lower()},,b\n".encode(), 200)
    check(v["enrolled"] == 2, f"import: {v}")
    v = call("GET", f"/v1/devices/{new2}", None, None, 200)
    check(v["enrolled"] is True and v["label"] == "b" and v["state"] == "idle",
          f"enrolled, normalized address, idle: {v['state']}")
    call("POST", f"/v1/devices/{new1}/enroll", AUTH, b'{"passkey": "77777"}', 400)
    v = call("POST", f"/v1/devices/{new1.lower()}/enroll", AUTH,
             b'{"passkey": "888888", "board": "b1", "label": "c"}', 200)
    check(v == {"address": new1, "enrolled": True}, f"enroll: {v}")
    v = call("GET", f"/v1/devices/{new1}", None, None, 200)
    check(v["enrolled_board"] == "b1" and v["label"] == "c", "board and label kept")
    for a in (new1, new2):
        call("DELETE", f"/v1/devices/{a}", AUTH, None, 200)
    call("DELETE", f"/v1/devices/{new1}", AUTH, None, 404)
    log = d.read_log()
    check("777777" not in log and "888888" not in log, "no passkey in the log")
    check(db_scalar(d.db, "SELECT count(*) FROM device_passkeys") == 0,
          "forgetting took the passkeys with it")


def test_bad_requests(d, api):
    def expect(method, path, want, body=None, headers=None):
        st, h, raw = request(d.url, method, path, body=body, headers=headers)
        check(st == want, f"{method} {path}: {st}, want {want}: {raw[:200]!r}")
        v = api.check_response(method, path, st, h, raw)
        check(isinstance(v, dict) and v.get("error") and v.get("message"), "error body")
        return h

    expect("GET", "/v1/nothing", 404)
    expect("GET", "/index.html", 404)
    expect("GET", "/v1/devices/", 404)
    h = expect("DELETE", "/v1/devices", 405)
    check(h.get("Allow") == "GET, HEAD", f"Allow {h.get('Allow')}")
    h = expect("GET", "/v1/rollout/pause", 405)
    check(h.get("Allow") == "POST", "Allow POST")
    expect("PUT", "/v1/health", 405, body=b"x")
    for q in ("limit=0", "limit=1001", "limit=x", "cursor=nope", "cursor=d2f",
              "state=sleeping", "state=", "group=" + "g" * 200):
        expect("GET", "/v1/devices?" + q, 400)

    # 413 from Content-Length alone (the body is never read) ...
    st, head, body = raw_request(d.port, (
        "POST /v1/rollout/pause HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + TOKEN +
        "\r\nContent-Length: 70000\r\nConnection: close\r\n\r\n").encode() + b" " * 70000)
    check(st == 413 and json.loads(body)["error"] == "payload_too_large", f"413: {st} {body}")
    # ... and from a chunked body that grows past 64 KiB.
    chunk = b" " * 40000
    data = ("POST /v1/rollout/pause HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + TOKEN +
            "\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    data += b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n"
    st, head, body = raw_request(d.port, data)
    check(st == 413 and json.loads(body)["error"] == "payload_too_large", f"413 chunked: {st}")
    # A long path and too many header fields: our limits, JSON answers.
    st, head, body = raw_request(d.port, ("GET /" + "a" * 3000 + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                          "Connection: close\r\n\r\n").encode())
    check(st == 414 and json.loads(body)["error"] == "uri_too_long", f"414: {st} {body[:100]}")
    hdrs = "".join(f"X-H{i}: v\r\n" for i in range(80))
    st, head, body = raw_request(d.port, ("GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + hdrs +
                                          "Connection: close\r\n\r\n").encode())
    check(st == 431 and json.loads(body)["error"] == "headers_too_large", f"431: {st}")
    # Broken HTTP never reaches the API: libmicrohttpd answers 400 with its own (HTML) body or
    # drops the connection, and the daemon carries on.
    st, head, body = raw_request(d.port, b"GET /v1/health HTTP/1.1\r\nbad header line\r\n\r\n")
    check(st == 400, f"bad header line: {st}")
    st, head, body = raw_request(d.port, b"GARBAGE\r\n\r\n")
    check(st is None, f"garbage: {st}")
    st, _, _ = request(d.url, "GET", "/v1/health")
    check(st == 200, "daemon unhealthy after bad requests")


def test_token_files(tmp):
    """A token file that cannot be used stops the daemon at start, with a clear message."""
    cases = [
        ("missing", None, "Failed to read API token file"),
        ("short", "short", "must hold 16 to 4096"),
        ("spaces", "with spaces inside the token", "must hold 16 to 4096"),
        ("world-readable", TOKEN, "can be read by others"),  # issue 18 item 5
    ]
    for name, token, msg in cases:
        sub = os.path.join(tmp, "tok-" + name)
        os.mkdir(sub)
        d = Daemon(FOTAGWD, sub, free_port(), token=token)
        if name == "world-readable":
            os.chmod(d.token_file, 0o644)
        d.start(wait=False)
        try:
            rc = d.proc.wait(timeout=10)
        finally:
            d.kill()
        check(rc == 1, f"token {name}: exit {rc}")
        check(msg in d.read_log(), f"token {name}: log lacks '{msg}': {d.read_log()}")

    # No token file configured: the daemon runs, warns, and refuses every POST.
    sub = os.path.join(tmp, "notoken")
    os.mkdir(sub)
    d = Daemon(FOTAGWD, sub, free_port())
    with open(d.conf, "a") as f:
        f.write("")
    with open(d.conf) as f:
        text = f.read().replace(f"token_file = {d.token_file}", "token_file =")
    with open(d.conf, "w") as f:
        f.write(text)
    d.start()
    try:
        st, _, body = request(d.url, "POST", "/v1/rollout/pause", headers=AUTH)
        check(st == 401 and b"no API token" in body, f"no token: {st} {body}")
        check("no token_file configured" in d.read_log(), "no warning about the missing token")
    finally:
        rc, took = d.stop()
    check(rc == 0, f"exit {rc}")

    # Disabled: nothing listens.
    sub = os.path.join(tmp, "disabled")
    os.mkdir(sub)
    d = Daemon(FOTAGWD, sub, free_port(), extra_api="enabled = false\n")
    # Up means READY=1: everything that would listen has been started by then.
    d.start(wait=False, ready=True)
    try:
        check(d.proc.poll() is None, "daemon exited with the API disabled")
        try:
            request(d.url, "GET", "/v1/health", timeout=2)
            raise Fail("API answers while disabled")
        except OSError:
            pass
    finally:
        rc, _ = d.stop()
    check(rc == 0, f"disabled: exit {rc}")


def test_busy_port(tmp, port):
    sub = os.path.join(tmp, "busy")
    os.mkdir(sub)
    d = Daemon(FOTAGWD, sub, port)
    d.start(wait=False)
    try:
        rc = d.proc.wait(timeout=10)
    finally:
        d.kill()
    check(rc == 1, f"second daemon on a busy port: exit {rc}")
    check("Address already in use" in d.read_log(), "no reason given for the busy port")


def main():
    with tempfile.TemporaryDirectory(prefix="fgw-api-it-") as tmp:
        main_dir = os.path.join(tmp, "main")
        os.mkdir(main_dir)
        d = Daemon(FOTAGWD, main_dir, free_port())
        seed(d.db, N)
        api = OpenAPI()
        d.start()
        try:
            test_endpoints(d, api)
            test_pagination(d, api)
            test_auth(d, api)
            test_enrollment(d, api)
            test_bad_requests(d, api)
            test_busy_port(tmp, d.port)
            # An idle keep-alive connection must not hold up the exit.
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=5)
            conn.request("GET", "/v1/health")
            conn.getresponse().read()
            rc, took = d.stop()
            conn.close()
            check(rc == 0, f"exit status {rc} after SIGTERM")
            check(took < 2.0, f"took {took:.2f}s to exit after SIGTERM")
        except Fail as e:
            d.kill()
            print("FAIL:", e)
            print(d.read_log()[-3000:])
            return 1
        finally:
            d.kill()
        try:
            test_token_files(tmp)
        except Fail as e:
            print("FAIL:", e)
            return 1
        # Every documented endpoint was exercised.
        ops = {(m.upper(), p) for p, item in api.spec["paths"].items() for m in item}
        missed = ops - {(m, p) for m, p, _ in api.seen}
        if missed:
            print("FAIL: endpoints never exercised:", sorted(missed))
            return 1
        print(f"ok: {len(api.seen)} (method, path, status) combinations checked against "
              "docs/openapi.json")
        return 0


if __name__ == "__main__":
    sys.exit(main())

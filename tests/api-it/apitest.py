"""Shared pieces of the API tests against a running fotagwd: seeded database, daemon process,
HTTP client and a small OpenAPI 3.1 response checker (stdlib only)."""
import glob
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOKEN = "it-token-0123456789abcdef"
JOB_STATES = ["queued", "connecting", "probing", "uploading", "marking", "resetting",
              "rebooting", "verifying", "confirming", "done", "skipped", "reverted", "failed",
              "superseded"]
ACTIVE = ["connecting", "probing", "uploading", "marking", "resetting", "rebooting",
          "verifying", "confirming"]


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def migrate(db_path):
    """The schema exactly as fotagwd builds it: every migration in order, user_version set."""
    files = sorted(glob.glob(os.path.join(SRC, "migrations", "[0-9][0-9][0-9][0-9]_*.sql")))
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA journal_mode=WAL")
    for i, f in enumerate(files, 1):
        with open(f) as fh:
            con.executescript(fh.read())
        con.execute(f"PRAGMA user_version = {i}")
    con.commit()
    return con


def address(i):
    return "C0:00:00:00:%02X:%02X" % (i >> 8, i & 0xFF)


def seed(db_path, n_devices=1000):
    """n devices; 90% have a job for the current release r2 in every state, the rest idle."""
    con = migrate(db_path)
    now = int(time.time() * 1000)
    con.executescript("""
        INSERT INTO releases (id, sequence, version, bundle_url, bundle_sha256, bundle_size,
            state, groups_json, policy_json, created_at, verified_at) VALUES
          ('r1', 1, '1.0.0', 'http://127.0.0.1/r1.zip', 'aa', 100, 'superseded', NULL, NULL, 1, 2),
          ('r2', 2, '1.1.0', 'http://127.0.0.1/r2.zip', 'bb', 200, 'verified', '["lab","field"]',
           '{"mode":"confirm","canary_percent":10,"max_failure_rate":0.25,"max_concurrent":8}', 3, 4),
          ('r3', 3, '1.2.0', 'http://127.0.0.1/r3.zip', 'cc', 300, 'pending', NULL, NULL, 5, NULL);
        INSERT INTO rollout (release_id, halted, updated_at) VALUES ('r2', 0, 1);
    """)
    groups = ["lab", "field", "north"]
    for i in range(n_devices):
        a = address(i)
        con.execute("INSERT INTO devices (address, name, rssi, last_seen, board, grp, created_at,"
                    " enrolled) VALUES (?, ?, ?, ?, 'nrf5340dk', ?, ?, 1)",
                    (a, f"dev{i}", -40 - i % 50, now, groups[i % 3], now - i))
        con.execute("INSERT INTO device_images (address, image, slot, version, hash, flags,"
                    " read_at) VALUES (?, 0, 0, '1.0.0', ?, 3, ?)", (a, "%064x" % i, now))
        if i % 10 == 9:
            continue  # idle: no job for r2
        st = JOB_STATES[i % len(JOB_STATES)]
        reason = {"failed": "image rejected" if i % 2 else "never came back",
                  "reverted": "revert seen"}.get(st)
        cur = con.execute(
            "INSERT INTO jobs (address, release_id, state, image, offset, attempts, reason,"
            " canary, created_at, updated_at, started_at, finished_at) VALUES"
            " (?, 'r2', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (a, st, 0 if st == "uploading" else None, 1024 * (i % 64), i % 3, reason,
             1 if i < 100 else 0, now, now + i, now,
             now + i if st in ("done", "failed", "reverted", "skipped") else None))
        con.execute("INSERT INTO events (at, address, job_id, kind, from_state, to_state)"
                    " VALUES (?, ?, ?, 'job-state', 'queued', ?)", (now, a, cur.lastrowid, st))
    con.commit()
    con.close()


class Daemon:
    def __init__(self, fotagwd, tmp, port, extra_api="", token=TOKEN):
        self.fotagwd, self.tmp, self.port = fotagwd, tmp, port
        self.db = os.path.join(tmp, "fotagw.db")
        self.conf = os.path.join(tmp, "fotagw.conf")
        self.token_file = os.path.join(tmp, "token")
        if token is not None:
            with open(self.token_file, "w") as f:
                f.write(token + "\n")
            os.chmod(self.token_file, 0o600)  # fotagwd refuses a token others can read
        with open(self.conf, "w") as f:
            # No Bluetooth here; the fleet runs without a release (no manifest URL).
            f.write(f"[log]\nlevel = info\n[store]\npath = {self.db}\n[ble]\nenabled = false\n"
                    f"[api]\nlisten = 127.0.0.1\nport = {port}\n"
                    f"token_file = {self.token_file}\n{extra_api}")
        self.log_path = os.path.join(tmp, "fotagwd.log")
        self.proc = None

    def start(self, wait=True, ready=False):
        """wait: until the API listens; ready: until fotagwd says READY=1 (sd_notify), for a
        daemon that has nothing to listen on."""
        self.log = open(self.log_path, "a+")
        env, notify = None, None
        if ready:
            path = os.path.join(self.tmp, "notify.sock")
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            notify.bind(path)
            env = dict(os.environ, NOTIFY_SOCKET=path)
        self.proc = subprocess.Popen([self.fotagwd, "--config", self.conf], stderr=self.log,
                                     stdout=subprocess.DEVNULL, env=env)
        if notify:
            with notify:
                self.wait_ready(notify)
        if not wait:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Fail(f"fotagwd exited {self.proc.returncode}: {self.read_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise Fail("fotagwd did not listen within 10 s")

    def wait_ready(self, notify, seconds=10):
        deadline = time.monotonic() + seconds
        notify.settimeout(0.2)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Fail(f"fotagwd exited {self.proc.returncode}: {self.read_log()}")
            try:
                msg = notify.recv(4096).decode(errors="replace")
            except socket.timeout:
                continue
            if "READY=1" in msg.split("\n"):
                return
        raise Fail(f"fotagwd did not say READY=1 within {seconds} s")

    def stop(self):
        """SIGTERM; returns (exit code, seconds it took)."""
        if not self.proc or self.proc.poll() is not None:
            return (self.proc.returncode if self.proc else None), 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        return rc, time.monotonic() - t0

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


def request(base, method, path, body=None, headers=None, timeout=10):
    """Returns (status, headers, raw body bytes); HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def raw_request(port, data, timeout=10):
    """Bytes as they are, for requests urllib will not send; returns (status, head, body),
    status None if the server closed without answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered before the whole body was sent
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
    if not buf:
        return None, "", b""  # closed without an answer
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.\d (\d+)", head)
    check(m, f"no status line in {buf[:200]!r}")
    return int(m.group(1)), head.decode(errors="replace"), body


class OpenAPI:
    """Checks a response against docs/openapi.json: documented status, schema of the body."""

    def __init__(self, path=os.path.join(SRC, "docs", "openapi.json")):
        with open(path) as f:
            self.spec = json.load(f)
        self.seen = set()

    def _op(self, method, path):
        for tmpl, item in self.spec["paths"].items():
            rx = "^" + re.sub(r"\\{[a-z_]+\\}", "[^/]+", re.escape(tmpl)) + "$"
            if re.match(rx, path):
                return tmpl, item.get(method.lower())
        return None, None

    def _resolve(self, schema):
        while "$ref" in schema:
            ref = schema["$ref"]
            check(ref.startswith("#/"), f"unsupported $ref {ref}")
            node = self.spec
            for part in ref[2:].split("/"):
                node = node[part]
            schema = node
        return schema

    def validate(self, value, schema, where="$"):
        schema = self._resolve(schema)
        if "allOf" in schema:
            for s in schema["allOf"]:
                self.validate(value, s, where)
        if "oneOf" in schema:
            ok = 0
            for s in schema["oneOf"]:
                try:
                    self.validate(value, s, where)
                    ok += 1
                except Fail:
                    pass
            check(ok == 1, f"{where}: matches {ok} of oneOf")
        t = schema.get("type")
        if t is not None:
            types = t if isinstance(t, list) else [t]
            check(any(self._is(value, x) for x in types), f"{where}: {value!r} is not {t}")
        if "enum" in schema:
            check(value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}")
        if isinstance(value, dict):
            for k in schema.get("required", []):
                check(k in value, f"{where}: required field '{k}' missing")
            for k, s in schema.get("properties", {}).items():
                if k in value:
                    self.validate(value[k], s, f"{where}.{k}")
        if isinstance(value, list):
            if "maxItems" in schema:
                check(len(value) <= schema["maxItems"], f"{where}: more than maxItems")
            if "items" in schema:
                for i, v in enumerate(value):
                    self.validate(v, schema["items"], f"{where}[{i}]")

    @staticmethod
    def _is(v, t):
        return {"null": v is None, "boolean": isinstance(v, bool),
                "integer": isinstance(v, int) and not isinstance(v, bool),
                "number": isinstance(v, (int, float)) and not isinstance(v, bool),
                "string": isinstance(v, str), "array": isinstance(v, list),
                "object": isinstance(v, dict)}[t]

    def check_response(self, method, path, status, headers, body):
        """Returns the parsed JSON body (or text for non-JSON answers)."""
        tmpl, op = self._op(method, path.split("?")[0])
        ctype = headers.get("Content-Type", "")
        if op is None:
            # Undocumented path or method: must be a JSON 404/405 error.
            check(status in (404, 405), f"{method} {path}: undocumented, got {status}")
            schema = self.spec["components"]["schemas"]["Error"]
        else:
            responses = op["responses"]
            check(str(status) in responses, f"{method} {tmpl}: status {status} not documented")
            self.seen.add((method, tmpl, status))
            content = self._resolve(responses[str(status)]).get("content", {})
            if "text/plain" in content:
                check(ctype.startswith("text/plain"), f"{path}: content type {ctype}")
                return body.decode()
            schema = content["application/json"]["schema"]
        check(ctype == "application/json", f"{method} {path}: content type {ctype!r}")
        value = json.loads(body)
        self.validate(value, schema, f"{method} {path} {status}")
        return value

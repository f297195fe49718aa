#!/usr/bin/env python3
"""The demo (issue 9) as a test.

  test_demo.py CASE FOTAGWD FOTACTL FOTAGW_SIM

CASE:
  rollout    tools/demo/demo.py with CI=true, DEMO_DEVICES=6 (two faulty devices among them) and
             DEMO_SCREENSHOT (a PNG of the status page, Chromium stopped afterwards):
             exit 0; from its JSON summary, every healthy device runs the release in both cores
             as the device itself reports it (version group 64, slot 0 hash, confirmed, nothing
             pending), every faulty one ended failed/reverted with its reason and still runs
             its old app image; plain progress lines were printed; nothing it started is left
             and its temp dir is gone
  interrupt  SIGINT while the rollout runs: exit 130, everything stopped, temp dir gone
"""
import configparser
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DEMO = os.path.join(REPO, "tools", "demo", "demo.py")
SCENARIO = os.path.join(REPO, "tools", "demo", "scenario.ini")
CASE, FOTAGWD, FOTACTL, SIM = sys.argv[1:5]
N = 6


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print("ok:", what, flush=True)


def env(summary=None):
    e = dict(os.environ, CI="true", DEMO_DEVICES=str(N), FOTAGWD=FOTAGWD, FOTACTL=FOTACTL,
             FOTAGW_SIM=SIM, DEMO_TIMEOUT="420")
    e.pop("DEMO_KEEP", None)
    if summary:
        e["DEMO_SUMMARY"] = summary
    return e


def faults():
    """Faulty devices among the first N, read from the scenario here (not from the driver)."""
    cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"),
                                   comment_prefixes=(";", "#"))
    cp.read(SCENARIO)
    out = {}
    for sec in cp.sections():
        m = re.fullmatch(r"device (\d+)(?:-(\d+))?", sec)
        if not m:
            continue
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        for i in range(lo, min(hi, N - 1) + 1):
            for k in ("bad_boot", "no_confirm"):
                if cp[sec].get(k) == "true":
                    out[i] = k
    return out


def secured():
    """Devices among the first N that require a passkey-authenticated link."""
    cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"),
                                   comment_prefixes=(";", "#"))
    cp.read(SCENARIO)
    out = []
    for sec in cp.sections():
        m = re.fullmatch(r"device (\d+)", sec)
        if m and int(m.group(1)) < N and cp[sec].get("security") == "authen":
            out.append(int(m.group(1)))
    return out


def leftovers(tmp):
    """Processes whose command line names the demo's temp dir."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if tmp in cmd:
            found.append(cmd[:120])
    return found


def temp_dir(output):
    m = re.search(r"(/\S*fotagw-demo-\w+)", output)
    if not m:
        raise Fail("the demo did not name its temp dir:\n" + output[-3000:])
    return m.group(1)


def case_rollout():
    fd, summary_path = tempfile.mkstemp(prefix="fgw-demo-summary-", suffix=".json")
    os.close(fd)
    shot = summary_path[:-5] + ".png"
    try:
        t0 = time.monotonic()
        e = dict(env(summary_path), DEMO_SCREENSHOT=shot)
        p = subprocess.run([sys.executable, DEMO], env=e, capture_output=True,
                           text=True, timeout=540, stdin=subprocess.DEVNULL)
        wall = time.monotonic() - t0
        print(p.stdout[-6000:])
        print(p.stderr[-4000:], file=sys.stderr)
        check(p.returncode == 0, f"demo exited {p.returncode} after {wall:.0f} s")
        tmp = temp_dir(p.stdout)
        check(not os.path.exists(tmp), f"temp dir {tmp} removed")
        check(not leftovers(tmp), f"no process of the demo left: {leftovers(tmp)}")
        progress = [l for l in p.stdout.splitlines() if re.match(r"\[\s*\d+\.\ds\] ", l)]
        check(len(progress) >= 3 and "\033" not in p.stdout,
              f"plain progress lines without a terminal ({len(progress)})")
        s = json.load(open(summary_path))
        png = open(shot, "rb").read() if os.path.exists(shot) else b""
        check(png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000,
              f"DEMO_SCREENSHOT: a PNG of the status page ({len(png)} bytes)")
    finally:
        os.unlink(summary_path)
        if os.path.exists(shot):
            os.unlink(shot)

    rel = s["release"]
    check(re.fullmatch(r"[0-9a-f]{64}", rel["app_hash"] or ""), "release app hash given")
    check(s["devices_total"] == N and len(s["devices"]) == N, f"{N} devices in the summary")
    bad = faults()
    check(len(bad) >= 1, f"the small fleet keeps faulty devices: {bad}")
    for d in s["devices"]:
        i, a, j = d["index"], d["after"], d["job"]
        check(j is not None, f"device {i} has a job")
        if i in bad:
            want = {"bad_boot": ("failed", "app core"), "no_confirm": ("reverted", "old image")}
            state, words = want[bad[i]]
            check(j["state"] == state and words in (j["reason"] or ""),
                  f"faulty device {i} ({bad[i]}): {j['state']}, reason '{j['reason']}'")
            check(a["app"] == d["before"]["app"] and a["app"] != rel["version"],
                  f"faulty device {i} still runs its old app core {a['app']}")
            check(a["app_confirmed"] and not a["pending"],
                  f"faulty device {i}: running image confirmed, nothing left pending")
        else:
            check(j["state"] == "done" and j["app_result"] == "verified" and
                  j["net_result"] == "verified", f"device {i}: done, both cores verified ({j})")
            check(d["before"]["app"] != rel["version"], f"device {i} started on another version")
            check(a["app"] == rel["version"] and a["net"] == rel["version"],
                  f"device {i} reports app {a['app']} net {a['net']} (release {rel['version']})")
            check(a["app_hash"] == rel["app_hash"], f"device {i}: slot 0 holds the release image")
            check(a["app_confirmed"] and not a["pending"],
                  f"device {i}: confirmed, nothing pending")
            check(j["duration_s"] and j["duration_s"] > 0, f"device {i}: job time given")
    check(s["rollout"]["counts"]["done"] == N - len(bad) and s["rollout"]["halted"] is False,
          f"the gateway agrees: {s['rollout']['counts']}")
    check(s["ok"] is True, "the driver's own verdict agrees")
    authen = secured()
    check(len(authen) >= 1, f"some devices of the small fleet require authentication: {authen}")
    for i in authen:
        check(s["paired"].get(f"fotagw-sim-{i:04d}") == "authenticated",
              f"device {i} paired with its enrolled passkey: {s['paired']}")
    print(f"demo with {N} devices: {wall:.0f} s wall, rollout {s['rollout_s']} s")


def case_interrupt():
    p = subprocess.Popen([sys.executable, DEMO], env=env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    out = []
    tmp = None
    deadline = time.monotonic() + 120
    try:
        for line in p.stdout:
            out.append(line)
            if tmp is None and "fotagw-demo-" in line:
                tmp = temp_dir(line)
            if re.match(r"\[\s*\d+\.\ds\] \d+/\d+ devices with a job", line):
                break
            if time.monotonic() > deadline:
                raise Fail("the rollout did not start:\n" + "".join(out))
        check(tmp and leftovers(tmp), "the demo's processes run")
        p.send_signal(signal.SIGINT)
        rest, _ = p.communicate(timeout=60)
        out.append(rest)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = "".join(out)
    print(text[-3000:])
    check(p.returncode == 130, f"exit status {p.returncode} after SIGINT")
    check("stopping everything" in text, "says it stops")
    check(not os.path.exists(tmp), f"temp dir {tmp} removed")
    check(not leftovers(tmp), f"no process of the demo left: {leftovers(tmp)}")


try:
    {"rollout": case_rollout, "interrupt": case_interrupt}[CASE]()
except Fail as e:
    print("FAIL:", e)
    sys.exit(1)
print(f"demo/{CASE}: passed")

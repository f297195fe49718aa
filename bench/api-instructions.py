#!/usr/bin/env python3
"""Loop work of one API read: callgrind instructions per request (issue 15, API reads).

fotagwd runs under callgrind with 10,000 devices in its database (no release) twice: once
answering N requests for PATH, once answering none. (total - baseline) / N is the work one
request costs the loop, the figure that decides how long uploads wait behind a read. The body
of the last answer is hashed so two builds can be checked to answer byte for byte the same.
Prints one JSON line.

  bench/api-instructions.py --build BUILD [--path /v1/devices] [--requests 100] [--profile F]
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402
from run import ft  # noqa: E402


def measure(fotagwd, tmp, name, path, n):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    # nothing listens on this port: the manifest poll fails, there is no release
    gw = run.CallgrindGateway(fotagwd, d, "http://127.0.0.1:9/manifest.json",
                              os.path.join(tmp, "manifest.pub"))
    run.seed_devices(gw.db, run.DB_DEVICES)
    body = b""
    try:
        gw.start()
        for _ in range(n):
            with urllib.request.urlopen(gw.url + path, timeout=60) as r:
                body = r.read()
        gw.proc.send_signal(signal.SIGTERM)
        rc = gw.proc.wait(timeout=120)
    finally:
        gw.kill()
    if rc != 0:
        raise SystemExit(f"{name}: fotagwd exited {rc}\n{gw.log()[-2000:]}")
    return run.callgrind_total(gw.callgrind_out), body, gw.callgrind_out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--path", default="/v1/devices")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--profile", help="copy the callgrind profile of the reads run here")
    a = ap.parse_args()
    fotagwd = os.path.join(os.path.abspath(a.build), "daemon", "fotagwd")
    with tempfile.TemporaryDirectory(prefix="fgw-api-instr-") as tmp:
        ft.run([os.path.join(os.path.abspath(a.build), "tools", "fotactl", "fotactl"), "release",
                "keygen", "-o", os.path.join(tmp, "manifest.pem"), "--public",
                os.path.join(tmp, "manifest.pub")])
        base, _, _ = measure(fotagwd, tmp, "baseline", a.path, 0)
        total, body, prof = measure(fotagwd, tmp, "reads", a.path, a.requests)
        if a.profile:
            shutil.copy(prof, a.profile)
    print(json.dumps({"metric": "api_instructions_per_request", "path": a.path,
                      "value": round((total - base) / a.requests), "unit": "instructions",
                      "requests": a.requests, "devices": run.DB_DEVICES,
                      "body_bytes": len(body), "body_sha256": hashlib.sha256(body).hexdigest()}))


if __name__ == "__main__":
    main()

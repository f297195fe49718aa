#!/usr/bin/env python3
"""REST under load while the fleet uploads (issue 8): does serving ops tools slow uploads down?

The same 8-device rollout over SMP/UDP (link "fast": uploads are link-bound, as over BLE) runs
twice on fresh simulators: once alone, once with wrk hammering GET /v1/devices (8 connections)
for the whole rollout. The upload goodput is the fleet's own figure (/metrics:
fotagw_upload_goodput_bytes_per_second = acknowledged image bytes / time spent uploading,
summed over devices). Prints one JSON line per figure and exits 1 if the uploads slowed down
by more than 5 %.

  bench/api-under-rollout.py --build BUILD [--runs N]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fleet-it"))
import fleettest as ft  # noqa: E402

DEVICES = 8
LINK = ["--link", "fast,erase=0,write=0,boot=500"]


def metric(url, name):
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^" + re.escape(name) + r" ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else None


def rollout(binaries, load):
    w = ft.World(binaries, DEVICES, sim_args=LINK, app_size=400000, net_size=100000)
    wrk = None
    try:
        w.gw.start()
        if load:
            wrk = subprocess.Popen(["wrk", "-t", "1", "-c", "8", "-d", "300s", "--latency",
                                    w.gw.url + "/v1/devices"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        t0 = time.monotonic()
        w.gw.wait_all_terminal(DEVICES, 300)
        took = time.monotonic() - t0
        jobs = w.gw.jobs()
        if not all(j[1] == "done" for j in jobs):
            raise SystemExit(f"rollout did not finish: {jobs}")
        goodput = metric(w.gw.url, "fotagw_upload_goodput_bytes_per_second")
        rps = p99 = None
        if wrk:
            wrk.send_signal(2)  # SIGINT: wrk prints its summary
            out = wrk.communicate(timeout=30)[0]
            m = re.search(r"Requests/sec:\s+([\d.]+)", out)
            rps = float(m.group(1)) if m else None
            m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
            p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] \
                if m else None
        return goodput, took, rps, p99
    finally:
        if wrk and wrk.poll() is None:
            wrk.kill()
        w.close(True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=2)
    a = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (make deps)")
    b = os.path.abspath(a.build)
    binaries = {"fotagwd": f"{b}/daemon/fotagwd", "fotactl": f"{b}/tools/fotactl/fotactl",
                "sim": f"{b}/tests/sim/fotagw-sim"}
    quiet, loaded = [], []
    for _ in range(a.runs):  # interleaved, so drifting machine load hits both alike
        quiet.append(rollout(binaries, False))
        loaded.append(rollout(binaries, True))
    g0 = statistics.median(r[0] for r in quiet)
    g1 = statistics.median(r[0] for r in loaded)
    slowdown = 1.0 - g1 / g0
    lines = [
        {"metric": "upload_goodput_alone", "value": round(g0), "unit": "B/s", "goal": None,
         "ok": None, "runs": [round(r[0]) for r in quiet]},
        {"metric": "upload_goodput_under_rest_load", "value": round(g1), "unit": "B/s",
         "goal": None, "ok": None, "runs": [round(r[0]) for r in loaded]},
        {"metric": "upload_slowdown_under_rest_load", "value": round(slowdown, 4),
         "unit": "ratio", "goal": "<= 0.05", "ok": slowdown <= 0.05},
        {"metric": "rest_rps_during_rollout", "value": statistics.median(r[2] for r in loaded),
         "unit": "req/s", "goal": None, "ok": None, "runs": [r[2] for r in loaded]},
        {"metric": "rest_p99_ms_during_rollout",
         "value": statistics.median(r[3] for r in loaded), "unit": "ms", "goal": None,
         "ok": None, "runs": [r[3] for r in loaded]},
    ]
    for line in lines:
        print(json.dumps(line), flush=True)
    return 0 if slowdown <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())

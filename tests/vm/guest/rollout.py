#!/usr/bin/env python3
"""Guest side of the VM full scenario, part 2: a small rollout by fotagwd through the real
bluetoothd. Makes a signed release (app + net core images, bundle, manifest) with fotactl,
served through a file:// manifest URL, starts fotagwd on the system bus with [ble] on the
central's adapter, waits until every job has ended and checks the outcome per device:
the first address must end "done", the second "failed" at boot (the simulator gives it
bad_boot). Reuses the fleet-it harness classes (tests/fleet-it/fleettest.py); python3 stdlib.

  rollout.py --build BUILD --work DIR --addr A1 --addr A2 [--adapter hci0] [--json OUT]
"""
import argparse
import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "fleet-it"))
import fleettest as ft  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--addr", action="append", required=True)
    ap.add_argument("--adapter", default="hci0")
    ap.add_argument("--json")
    ap.add_argument("--limit", type=float, default=300)
    ap.add_argument("--passkey-file", help="[ble] passkey_file (pairing scenario)")
    ap.add_argument("--all-done", action="store_true",
                    help="every device must end done (default: the 2nd fails at boot)")
    a = ap.parse_args()
    logs = os.environ.get("FGW_VM_LOGS", a.work)
    srv = os.path.join(a.work, "srv")
    gwdir = os.path.join(a.work, "gw")
    os.makedirs(srv, exist_ok=True)
    os.makedirs(gwdir, exist_ok=True)
    fotactl = os.path.join(a.build, "tools", "fotactl", "fotactl")
    # a 50 % failure is expected here: the failure-rate halt must not stop the rollout
    rel = ft.Release(fotactl, a.work, srv, version="2.0.0", rate=1.0, app_size=65536,
                     net_size=32768)
    gw = ft.Gateway(os.path.join(a.build, "daemon", "fotagwd"), gwdir,
                    "file://" + os.path.join(srv, "manifest.json"),
                    os.path.join(a.work, "manifest.pub"), ble=True)
    gw.log_path = os.path.join(logs, "fotagwd.log")
    with open(gw.conf) as f:
        conf = f.read()
    # the central's adapter; TCG is slow: generous connection and reboot bounds
    for old, new in (("connect_timeout_s = 15", f"connect_timeout_s = 40\nadapter = {a.adapter}\n"
                     # btvirt reports no RSSI: any threshold drops every advert
                     "rssi_threshold = 0\n"
                     # btvirt: a second simultaneous link from the central lost its ATT
                     # traffic (MTU exchange timed out) and left that controller unusable
                     "max_connections = 1"),
                     ("reboot_timeout_s = 40", "reboot_timeout_s = 120"),
                     ("level = info", "level = debug")):
        assert old in conf, old
        conf = conf.replace(old, new)
    if a.passkey_file:
        # one bluetoothd serves both ends here: the peripherals' agent must stay the default
        # (it answers the responder side), ours answers our own Pair() calls
        conf += f"[ble]\npasskey_file = {a.passkey_file}\ndefault_agent = false\n"
    with open(gw.conf, "w") as f:
        f.write(conf)
    print("fotagwd config:\n" + conf, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    t0 = time.monotonic()
    ok = False
    try:
        gw.start()
        # only the given devices: bluetoothd may list others it holds a bond for
        want = {x.upper() for x in a.addr}
        jobs = gw.wait(lambda j: want <= {r[0].upper() for r in j if r[1] in ft.TERMINAL},
                       f"{len(want)} jobs to end", a.limit)
        jobs = [j for j in jobs if j[0].upper() in want]
        secs = time.monotonic() - t0
        by = {j[0].upper(): j for j in jobs}
        print("jobs:", jobs, flush=True)
        good = by.get(a.addr[0].upper())
        ft.check(good is not None and good[1] == "done", f"{a.addr[0]} done: {good}")
        if a.all_done:
            ft.check(all(j[1] == "done" for j in jobs), f"all done: {jobs}")
        else:
            bad = by.get(a.addr[1].upper())
            ft.check(bad is not None and bad[1] == "failed" and "app core" in (bad[2] or ""),
                     f"{a.addr[1]} failed at boot: {bad}")
        ft.check(good[4] is not None and good[5] is not None,
                 f"{a.addr[0]}: app and net core results recorded: {good[4]}, {good[5]}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"seconds": round(secs, 2),
                           "jobs": [{"address": j[0], "state": j[1], "reason": j[2]}
                                    for j in jobs]}, f, indent=1)
        ok = True
    except ft.Fail as e:
        print("FAIL:", e, flush=True)
    finally:
        rc = gw.kill(signal.SIGTERM)
        print("fotagwd exit status on SIGTERM:", rc, flush=True)
    return 0 if ok and rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Fleet end to end with BLE security (issue 16): fotagwd + fotagw-sim --bluez whose devices
require an authenticated link for their SMP characteristic (security=authen, passkey 123456),
as NCS builds with CONFIG_MCUMGR_TRANSPORT_BT_PERM_RW_AUTHEN do. Checked on the devices' own
state and the simulator's log of what happened over the air.

  test_fleet_secure.py CASE FOTAGWD FOTACTL FOTAGW_SIM

CASE:
  pair-ok     the right passkey: paired (authenticated) once per device, all done
  pair-none   no passkey configured: failed with "pairing required", in under 30 s
  pair-wrong  a wrong passkey: failed with "pairing failed", not retried in a loop
  bond-lost   the device forgets its bond at its reset: the stale bond is removed and the
              device paired again once, then done
  rpa-rotate  the device advertises from rotating private addresses (rpa_rotate_s); once
              paired bluetoothd resolves it to its identity address: one registry row, one
              job, done
"""
import os
import sqlite3
import sys
import time

import fleettest as ft
from fleettest import check

CASE, FOTAGWD, FOTACTL, SIM = sys.argv[1:5]
BIN = {"fotagwd": FOTAGWD, "fotactl": FOTACTL, "sim": SIM}
FAST = ["--link", "fast,erase=0,write=0,boot=1500"]
AUTHEN = ["--set", "security=authen", "--set", "passkey=123456"]


def passkey_conf(w, value):
    path = os.path.join(w.tmp, "passkey")
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)
    return f"[ble]\npasskey_file = {path}\n"


def world(n, sim_extra, passkey=None):
    w = ft.World(BIN, n, ble=True, sim_args=FAST + ["--seed", "5"] + AUTHEN + sim_extra)
    if passkey:
        with open(w.gw.conf, "a") as f:
            f.write(passkey_conf(w, passkey))
    return w


def device_on_release(w, i):
    st = ft.device_state(w.sim.port(i))
    s0 = st["slots"].get((0, 0))
    check(s0 and s0["hash"] == w.release.app_hash, f"device {i}: app slot 0 runs the release")
    check(s0.get("confirmed"), f"device {i}: confirmed")


def device_untouched(w, i):
    st = ft.device_state(w.sim.port(i))
    s1 = st["slots"].get((0, 1))
    check(not s1 or s1["hash"] != w.release.app_hash, f"device {i}: got no image")


def case_pair_ok():
    n = 2
    w = world(n, [], passkey="123456")
    ok = False
    try:
        w.gw.start()
        jobs = w.gw.wait_all_terminal(n, 300)
        check(all(j[1] == "done" for j in jobs), f"all done: {jobs}")
        for i in range(n):
            device_on_release(w, i)
        sim = w.sim.log()
        check(sim.count("level: authenticated") == n, "one authenticated pairing per device")
        check("bluez-acquire-notify-unanswered" not in sim, "no AcquireNotify unsecured")
        check("123456" not in w.gw.log(), "the passkey is not in the log")
        ok = True
    finally:
        w.close(ok)


def case_pair_none():
    w = world(1, [])
    ok = False
    try:
        t0 = time.monotonic()
        w.gw.start()
        jobs = w.gw.wait_all_terminal(1, 120)
        took = time.monotonic() - t0
        check(jobs[0][1] == "failed", f"failed: {jobs}")
        check("pairing required" in (jobs[0][2] or ""), f"reason says so: {jobs[0][2]}")
        check(took < 30, f"in under 30 s (took {took:.1f} s)")
        device_untouched(w, 0)
        check("bluez-acquire-notify-unanswered" not in w.sim.log(), "no AcquireNotify unsecured")
        ok = True
    finally:
        w.close(ok)


def case_pair_wrong():
    w = world(1, [], passkey="654321")
    ok = False
    try:
        w.gw.start()
        jobs = w.gw.wait_all_terminal(1, 120)
        check(jobs[0][1] == "failed", f"failed: {jobs}")
        check("pairing failed" in (jobs[0][2] or ""), f"reason says so: {jobs[0][2]}")
        n1 = w.sim.log().count("event: pairing-failed")
        check(1 <= n1 <= 2, f"paired at most twice (bluetoothd's own try, ours): {n1}")
        time.sleep(5)  # nothing may go on trying
        check(w.sim.log().count("event: pairing-failed") == n1, "not retried in a loop")
        check("654321" not in w.gw.log(), "the passkey is not in the log")
        device_untouched(w, 0)
        ok = True
    finally:
        w.close(ok)


def case_bond_lost():
    w = world(1, ["--set", "bond_lost=true"], passkey="123456")
    ok = False
    try:
        w.gw.start()
        jobs = w.gw.wait_all_terminal(1, 300)
        check(jobs[0][1] == "done", f"done: {jobs}")
        device_on_release(w, 0)
        sim = w.sim.log()
        check("event: bond-lost" in sim, "the device lost its bond at its reset")
        check(sim.count("level: authenticated") == 2, "paired again once")
        check(w.gw.log().count("event: ble-bond-removed") == 1, "one event for it")
        ok = True
    finally:
        w.close(ok)


def registry(w):
    con = sqlite3.connect(f"file:{w.gw.db}?mode=ro", uri=True, timeout=5)
    try:
        devs = [r[0] for r in con.execute("SELECT address FROM devices")]
        jobs = con.execute("SELECT address, state FROM jobs").fetchall()
        ev = con.execute("SELECT count(*) FROM events WHERE kind = "
                         "'device-identity-resolved'").fetchone()[0]
        return devs, jobs, ev
    finally:
        con.close()


def case_rpa_rotate():
    w = world(1, ["--set", "rpa_rotate_s=1"], passkey="123456")
    ok = False
    try:
        w.gw.start()
        jobs = w.gw.wait_all_terminal(1, 300)
        check(jobs[0][1] == "done", f"done: {jobs}")
        device_on_release(w, 0)
        # bonded, its later RPAs resolve to the same object (bluetoothd holds the IRK)
        devs, jobs, ev = registry(w)
        check(len(devs) == 1, f"one registry row: {devs}")
        check(devs[0].startswith("C0:FF:EE"), f"keyed on the identity address: {devs}")
        check(jobs == [(devs[0], "done")], f"one job, done, of that row: {jobs}")
        check(ev == 1, f"one device-identity-resolved event: {ev}")
        check("event: device-identity-resolved" in w.gw.log(), "fotagwd logged it")
        print("rpa rotations seen by the simulator:", w.sim.log().count("event: rpa-rotated"))
        ok = True
    finally:
        w.close(ok)


CASES = {"pair-ok": case_pair_ok, "pair-none": case_pair_none, "pair-wrong": case_pair_wrong,
         "bond-lost": case_bond_lost, "rpa-rotate": case_rpa_rotate}

if __name__ == "__main__":
    try:
        CASES[CASE]()
    except ft.Fail as e:
        print("FAIL:", e)
        sys.exit(1)
    print("PASS", CASE)

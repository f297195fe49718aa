#!/usr/bin/env python3
"""Enrollment end to end (issue 16 item 2): fotagwd with [fleet] enrollment = allowlist,
fotagw-sim over UDP, fotactl devices import / enroll / forget through the REST API. Checked on
the simulated devices' own flash (their state directory) and SMP image state, not only on
what fotagwd says.

  test_enroll.py CASE FOTAGWD FOTACTL FOTAGW_SIM

CASE:
  allowlist  a bad CSV is refused whole with one error per bad line; a good one enrols two
             of three devices; the third is "unenrolled" in the API, fotactl and metrics,
             gets no job and not one byte, and takes no canary slot; a passkey given at
             enrollment appears in no answer, log or output; forget removes a device
  open       enrollment = open: every device gets the release, and fotagwd warns at start
  board      a release for another board (targets.board) than the one the device reports
             (os info, hardware platform): skipped, the reason names both, not one byte sent
"""
import hashlib
import os
import subprocess
import sys

import fleettest as ft
from fleettest import check

CASE, FOTAGWD, FOTACTL, SIM = sys.argv[1:5]
BIN = {"fotagwd": FOTAGWD, "fotactl": FOTACTL, "sim": SIM}
FAST = ["--link", "fast,erase=0,write=0,boot=1500"]
PASSKEY = "424242"


def fotactl(w, *args):
    token = os.path.join(w.gw.tmp, "token")
    p = subprocess.run([FOTACTL, "--url", w.gw.url, "--token-file", token, *args],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def flash(w, i):
    """Every file of the simulated device's state directory with its SHA-256."""
    d = os.path.join(w.sim.state_dir, f"dev-{i:04d}")
    out = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def write(w, name, text, mode=0o600):
    path = os.path.join(w.tmp, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def case_allowlist():
    w = ft.World(BIN, 3, sim_args=FAST, enrollment="allowlist", canary=50)
    a = [w.address(i) for i in range(3)]
    ok = False
    try:
        before = flash(w, 2)
        w.gw.start()
        check("enrollment = open" not in w.gw.log(), "no open-enrollment warning")
        # nothing is enrolled: all three are listed, none has a job
        devs = w.gw.get("/v1/devices")["devices"]
        check(sorted(d["state"] for d in devs) == ["unenrolled"] * 3,
              f"three unenrolled devices: {[d['state'] for d in devs]}")

        bad = write(w, "bad.csv", "address,passkey,group\n"
                    f"{a[0]},{PASSKEY},lab\n"
                    f"{a[1]},12345,lab\n"            # line 3: five digits
                    "not-an-address,,lab\n"          # line 4
                    f"{a[0]},,lab\n")                # line 5: twice
        rc, out, err = fotactl(w, "devices", "import", bad)
        check(rc == 1, f"a bad CSV fails (rc {rc})")
        for want in ("line 3: passkey must be six digits", "line 4: address is neither",
                     "line 5: the same address as line 2", "nothing was enrolled"):
            check(want in err, f"error names it: '{want}'")
        check(PASSKEY not in out + err, "no passkey in fotactl's output")
        check(all(d["state"] == "unenrolled" for d in w.gw.get("/v1/devices")["devices"]),
              "all or nothing: still none enrolled")

        good = write(w, "fleet.csv", "address,passkey,board,group,label\n"
                     f"{a[0]},{PASSKEY},nrf5340dk/nrf5340/cpuapp,default,bench 0\n"
                     f"{a[1]},,,default,\"bench 1, left\"\n")
        rc, out, err = fotactl(w, "devices", "import", good)
        check(rc == 0 and "2 device(s) enrolled" in out, f"import: rc {rc} {out} {err}")
        jobs = w.gw.wait(lambda j: len(j) == 2 and all(r[1] in ft.TERMINAL for r in j),
                         "the two enrolled devices to finish", 180)
        check(all(j[1] == "done" for j in jobs), f"both done: {jobs}")
        check(sorted(j[0] for j in jobs) == sorted(a[:2]), "jobs only for the enrolled two")

        # the stranger: no job, not one byte, and it says so everywhere
        check(flash(w, 2) == before, "device 2's flash is byte for byte what it was")
        st = ft.device_state(w.sim.port(2))
        check((0, 1) not in st["slots"] and
              st["slots"][(0, 0)]["hash"] != w.release.app_hash, "device 2 got no image")
        d2 = w.gw.get("/v1/devices/" + a[2])
        check(d2["state"] == "unenrolled" and d2["enrolled"] is False and d2["job"] is None,
              f"API: {d2['state']}, enrolled {d2['enrolled']}, job {d2['job']}")
        m = w.gw.metrics()
        check(m.get('fotagw_devices{state="unenrolled"}') == 1, "metrics: one unenrolled")
        rc, out, _ = fotactl(w, "devices", "--state", "unenrolled")
        check(rc == 0 and a[2] in out and a[0] not in out, "fotactl devices --state unenrolled")
        r = w.gw.get("/v1/rollout")
        canaries = sum(1 for j in jobs if j[3])
        check(r["canary"]["total"] == canaries and canaries >= 1,
              f"canaries only among the enrolled: {r['canary']}")
        check(r["failure_rate"] == 0 and r["halted"] is False and r["in_progress"] == 0,
              f"halt rule: {r['failure_rate']}, halted {r['halted']}")

        # the passkey lives in device_passkeys only
        d0 = w.gw.get("/v1/devices/" + a[0])
        check(d0["enrolled"] and d0["label"] == "bench 0", "label kept")
        check(PASSKEY not in str(d0) and PASSKEY not in str(w.gw.get("/v1/devices")),
              "no passkey in API answers")
        check(PASSKEY not in w.gw.log(), "no passkey in fotagwd's log")
        with ft.sqlite3.connect(f"file:{w.gw.db}?mode=ro", uri=True) as con:
            pk = con.execute("SELECT passkey FROM device_passkeys WHERE address = ?",
                             (a[0],)).fetchall()
        check(pk == [(int(PASSKEY),)], "the passkey is in the device_passkeys table")

        # enroll one by one: the passkey from a file, never on the command line
        pkfile = write(w, "pk", "123456\n")
        rc, out, err = fotactl(w, "devices", "enroll", a[2], "--passkey-file", pkfile,
                               "--label", "late")
        check(rc == 0 and f"{a[2]}: enrolled" in out, f"enroll: {out} {err}")
        rc, out, err = subprocess.run([FOTACTL, "--url", w.gw.url, "devices", "forget", a[2]],
                                      capture_output=True, text=True, timeout=60).returncode, \
            "", ""
        check(rc == 1, "forget without the token is refused")
        # enrolled now, so it is updated (a running update refuses forget: test-fleet-enroll)
        jobs = w.gw.wait(lambda j: len(j) == 3 and all(r[1] in ft.TERMINAL for r in j),
                         "device 2, enrolled late, to finish", 180)
        check(all(j[1] == "done" for j in jobs), f"device 2 done once enrolled: {jobs}")
        rc, out, err = fotactl(w, "devices", "forget", a[2])
        check(rc == 0 and f"{a[2]}: forgotten" in out, f"forget: {out} {err}")
        rc, out, err = fotactl(w, "devices", "forget", a[2])
        check(rc == 1 and "404" in err, f"forget again: 404 ({err.strip()})")
        ok = True
    finally:
        w.close(ok)


def case_open():
    w = ft.World(BIN, 2, sim_args=FAST, enrollment="open")
    ok = False
    try:
        w.gw.start()
        jobs = w.gw.wait_all_terminal(2, 180)
        check(all(j[1] == "done" for j in jobs), f"every device updated: {jobs}")
        check("enrollment = open" in w.gw.log(), "fotagwd warned about open enrollment")
        ok = True
    finally:
        w.close(ok)


def case_board():
    w = ft.World(BIN, 1, sim_args=FAST, enrollment="allowlist")
    ok = False
    try:
        # the same images, bundled for another product (the pipeline checks the bundle's
        # boards against targets.board, so both say thingy53)
        rel = w.release.manifest["releases"][0]
        bundle = os.path.join(w.ng.srv, rel["id"] + ".zip")
        ft.run([FOTACTL, "release", "make-bundle", "-o", bundle,
                "--app", os.path.join(w.tmp, "app-2.0.0.bin"),
                "--net", os.path.join(w.tmp, "net-2.0.0.bin"),
                "--app-board", "thingy53/nrf5340/cpuapp", "--net-board", "thingy53/nrf5340/cpunet"])
        data = open(bundle, "rb").read()
        rel["bundle"].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        rel["targets"]["board"] = "thingy53/nrf5340/cpuapp"
        w.release.publish()
        before = flash(w, 0)
        w.gw.start()
        rc, out, err = fotactl(w, "devices", "enroll", w.address(0))
        check(rc == 0, f"enrolled: {out} {err}")
        jobs = w.gw.wait_all_terminal(1, 120)
        check(jobs[0][1] == "skipped", f"skipped: {jobs}")
        check("nrf5340dk/nrf5340/cpuapp" in jobs[0][2] and "thingy53/nrf5340/cpuapp" in
              jobs[0][2], f"the reason names both boards: {jobs[0][2]}")
        check(flash(w, 0) == before, "the device's flash is untouched")
        d = w.gw.get("/v1/devices/" + w.address(0))
        check(d["board"] == "nrf5340dk/nrf5340/cpuapp", f"its reported board is kept: {d['board']}")
        ok = True
    finally:
        w.close(ok)


CASES = {"allowlist": case_allowlist, "open": case_open, "board": case_board}

try:
    CASES[CASE]()
except ft.Fail as e:
    print("FAIL:", e)
    sys.exit(1)
print(f"fleet/enroll-{CASE}: passed")

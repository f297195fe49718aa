#!/usr/bin/env python3
"""Fleet on several BLE adapters (issue 17): fotagwd + fotagw-sim --adapters 2.

  test_fleet_adapters.py CASE FOTAGWD FOTACTL FOTAGW_SIM

CASE:
  adapters      40 devices: some heard only by hci0, some only by hci1, some by both with
                different RSSI; [ble] adapters = all. Every device ends done, running the
                release; both adapters carried links; GET /v1/adapters and the
                fotagw_ble_adapter_* series describe them.
  adapter-loss  12 devices heard by both adapters (hci1 louder); hci1 is unplugged
                (SimControl1.RemoveAdapter) while its links upload: those jobs move to hci0
                and every device ends done.
"""
import subprocess
import sys
import time

import fleettest as ft
from fleettest import check

CASE, FOTAGWD, FOTACTL, SIM = sys.argv[1:5]
BIN = {"fotagwd": FOTAGWD, "fotactl": FOTACTL, "sim": SIM}
FAST = ["--link", "fast,erase=0,write=0,boot=1500"]
GW = "[ble]\nadapters = all\nmax_connections = 4\n"


def busctl(bus, *args):
    p = subprocess.run(["busctl", "--address=" + bus.address] + list(args),
                       capture_output=True, text=True, timeout=20)
    return p.returncode, p.stdout, p.stderr


def adapter_links(w, seen):
    """Polls GET /v1/adapters; records the most links seen on each adapter."""
    for a in w.gw.get("/v1/adapters")["adapters"]:
        seen[a["name"]] = max(seen.get(a["name"], 0), a["links"])


def case_adapters():
    n = 40
    args = FAST + ["--adapters", "2", "--seed", "5"]
    for i in range(n):
        heard = ["hci0:-55", "hci1:-60", "hci0:-50;hci1:-72", "hci0:-78;hci1:-52"][i % 4]
        args += ["--fault", f"{i}:adapters={heard}"]
    w = ft.World(BIN, n, ble=True, sim_args=args, gw_extra=GW)
    ok = False
    try:
        w.gw.start()
        seen = {}
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            adapter_links(w, seen)
            jobs = w.gw.jobs()
            if len(jobs) == n and all(j[1] in ft.TERMINAL for j in jobs):
                break
            time.sleep(0.5)
        jobs = w.gw.wait_all_terminal(n, 5)
        states = [j[1] for j in jobs]
        check(all(s == "done" for s in states), f"all {n} done on two adapters: {states}")
        for i in range(0, n, 3):
            st = ft.device_state(w.sim.port(i))
            s0 = st["slots"].get((0, 0))
            check(s0 and s0["hash"] == w.release.app_hash and s0.get("confirmed"),
                  f"device {i} runs the release")
        check(seen.get("hci0", 0) > 0 and seen.get("hci1", 0) > 0,
              f"both adapters carried links: {seen}")
        check(max(seen.values()) <= 4, f"max_connections per adapter: {seen}")
        names = sorted(a["name"] for a in w.gw.get("/v1/adapters")["adapters"])
        check(names == ["hci0", "hci1"], f"GET /v1/adapters: {names}")
        m = w.gw.metrics()
        for ad in ("hci0", "hci1"):
            for s in ("links", "upload_limit", "goodput_bytes_per_second",
                      "ceiling_bytes_per_second", "ceiling_share"):
                key = f'fotagw_ble_adapter_{s}{{adapter="{ad}"}}'
                check(key in m, f"metric {key}")
        ok = True
    finally:
        w.close(ok)


def case_adapter_loss():
    n = 12
    args = FAST + ["--adapters", "2", "--seed", "9", "--set", "adapters=hci0:-70;hci1:-50"]
    w = ft.World(BIN, n, ble=True, sim_args=args, gw_extra=GW)
    ok = False
    try:
        w.gw.start()
        # hci1 hears them better: wait for its links to carry uploads, then unplug it
        w.gw.wait(lambda j: sum(1 for r in j if r[1] == "uploading") >= 1, "an upload", 120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            a = {x["name"]: x for x in w.gw.get("/v1/adapters")["adapters"]}
            if a.get("hci1", {}).get("ready_links", 0) > 0:
                break
            time.sleep(0.2)
        check(a.get("hci1", {}).get("ready_links", 0) > 0, f"links on hci1: {a}")
        rc, _, err = busctl(w.bus, "call", "org.bluez", "/org/fotagw/sim",
                            "org.fotagw.SimControl1", "RemoveAdapter", "s", "hci1")
        check(rc == 0, f"RemoveAdapter: {err}")
        jobs = w.gw.wait_all_terminal(n, 600)
        states = [j[1] for j in jobs]
        check(all(s == "done" for s in states), f"all {n} done after losing hci1: {states}")
        names = [x["name"] for x in w.gw.get("/v1/adapters")["adapters"]]
        check(names == ["hci0"], f"only hci0 left: {names}")
        log = w.gw.log()
        # the jobs on hci1 failed once and went back to the queue, then finished on hci0
        check("failed: link lost" in log or "attempt 1 failed" in log,
              "the links through hci1 failed and their jobs were retried")
        ok = True
    finally:
        w.close(ok)


CASES = {"adapters": case_adapters, "adapter-loss": case_adapter_loss}

if __name__ == "__main__":
    try:
        CASES[CASE]()
    except ft.Fail as e:
        print(f"FAIL: {e}")
        sys.exit(1)
    print("ok")

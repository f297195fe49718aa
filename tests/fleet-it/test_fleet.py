#!/usr/bin/env python3
"""Fleet end to end (issue 7): fotagwd + fotagw-sim + a release served by nginx.

  test_fleet.py CASE FOTAGWD FOTACTL FOTAGW_SIM

CASE:
  rollout-udp  8 devices over SMP/UDP, mixed swap/overwrite-only: all done, both cores new
  rollout-ble  20 devices through the fake bluetoothd, mixed modes and starting versions;
               checked on the devices' own state
  faults       random disconnects, a device whose image fails validation at boot, one that
               reverts because nobody confirmed, one whose net core slot cannot be opened:
               a single-image device that stores the net core image as image 0: the others
               finish, the bad ones end with their reason, no test image is left unconfirmed
  canary       the canary devices fail: the rollout halts and non-canaries wait; resume
               through the API continues it
  restart      fotagwd is killed with SIGKILL at random moments and restarted: the fleet
               converges, no job is lost or duplicated, PRAGMA integrity_check passes
  out-of-range a BLE device away mid-upload for 30 s, retry limit 3: it waits, burns no
               attempts while away, and finishes
  manifest-expiry  the manifest in force expires while served unchanged (nginx answers 304):
               event, health degraded, fotagw_manifest_expired 1, and a job retried then
               does not start; a fresh manifest lifts the hold (issue 18 item 2); the
               polls are counted in fotagw_manifest_polls_total{result} (issue 20 item 4)
  no-downgrade policy allow_downgrade false: the app upload carries mcumgr's upgrade flag, so
               a device already running a newer app refuses it; the other one is updated
  no-bus       fotagwd starts before the system bus exists: it runs, the API answers, health
               says BLE "unavailable" (fotagw_ble_adapter_up 0); then a dbus-daemon and the
               fake bluetoothd appear and a device is updated; the dbus-daemon is killed while
               a second device uploads, a new one comes up on the same socket and that device
               finishes (issue 18 item 7)
  name-prefix-reload  two BLE devices named alpha-0 and beta-1, name_prefix alpha-, no
               release: only alpha-0 joins the registry; SIGHUP with name_prefix beta-, then
               a release: beta-1 is updated, alpha-0 (matching only the old prefix) keeps a
               queued job that never starts (issue 18 item 7)
  hostile-rsn  a device refuses the upload (on 3.0.0, no downgrade) with an SMP rsn text that
               carries ESC/BEL sequences and a forged "<0>" journal line: fotagwd's log and
               fotactl devices/device/rollout (and --json) show it escaped, never raw
               (issue 18 item 1)
  watch        fotactl watch in tmux during the rollout: live bars (image, %, KiB/s, ETA)
               that move on, then the final counts; q quits
"""
import os
import random
import signal
import subprocess
import sqlite3
import sys
import time

import fleettest as ft
from fleettest import check

CASE, FOTAGWD, FOTACTL, SIM = sys.argv[1:5]
BIN = {"fotagwd": FOTAGWD, "fotactl": FOTACTL, "sim": SIM}
# Quick link and flash so a rollout takes seconds; the link model still paces every packet.
FAST = ["--link", "fast,erase=0,write=0,boot=1500"]


def device_on_release(w, i):
    """The device itself runs the release in both cores, confirmed."""
    st = ft.device_state(w.sim.port(i))
    s0 = st["slots"].get((0, 0))
    check(s0 and s0["hash"] == w.release.app_hash, f"device {i}: app slot 0 runs the release")
    check(s0.get("active") and s0.get("confirmed"), f"device {i}: app image active+confirmed")
    check(st["versions"].get("net") == w.release.version.split("+")[0],
          f"device {i}: net core reports {st['versions'].get('net')}")
    return st


def no_unconfirmed_test_image(w, i):
    st = ft.device_state(w.sim.port(i))
    s0 = st["slots"].get((0, 0))
    check(s0 and s0.get("confirmed"), f"device {i}: no unconfirmed test image left")
    for (img, slot), e in st["slots"].items():
        check(not e.get("pending"), f"device {i}: image {img} slot {slot} not left pending")


def case_rollout_udp():
    w = ft.World(BIN, 8, sim_args=FAST + ["--mode", "mixed"])
    ok = False
    try:
        w.gw.start()
        jobs = w.gw.wait_all_terminal(8, 180)
        check(all(j[1] == "done" for j in jobs), f"all 8 done: {[j[1] for j in jobs]}")
        check(all(j[4] == "verified" and j[5] == "verified" for j in jobs),
              "both cores verified (net core through the firmware's version group)")
        for i in range(8):
            device_on_release(w, i)
        r = w.gw.get("/v1/rollout")
        check(r["counts"]["done"] == 8 and r["halted"] is False and r["failure_rate"] == 0,
              f"the API agrees: {r['counts']}")
        ok = True
    finally:
        w.close(ok)


def case_rollout_ble():
    n = 20
    scen_args = []
    # Mixed starting versions (the sim generates each device's running images).
    for i in range(n):
        v = ["1.0.0", "1.1.0", "0.9.0+3"][i % 3]
        scen_args += ["--fault", f"{i}:app_version={v},net_version={v}"]
    w = ft.World(BIN, n, ble=True, sim_args=FAST + ["--mode", "mixed", "--seed", "3"] + scen_args)
    ok = False
    try:
        w.gw.start()
        jobs = w.gw.wait_all_terminal(n, 600)
        states = [j[1] for j in jobs]
        check(all(s == "done" for s in states), f"all {n} done over BLE: {states}")
        for i in range(n):
            device_on_release(w, i)
        m = w.gw.get("/v1/health")
        check(m["adapter_state"] in ("on", "powered"), f"adapter {m['adapter_state']}")
        log = w.gw.log()
        check("from: rebooting, to: verifying" in log, "reconnected after the reset")
        ok = True
    finally:
        w.close(ok)


def case_faults():
    n = 9
    args = FAST + ["--mode", "mixed", "--seed", "7",
                   "--fault", "0:disconnect_prob=0.03",
                   "--fault", "2:bad_boot=true",
                   "--fault", "3:no_confirm=true,watchdog_ms=3000",   # odd index: swap
                   "--fault", "4:net_unreadable=true",
                   "--fault", "6:disconnect_at_chunk=20",
                   "--fault", "8:single_image=true"]                    # ignores "image"
    w = ft.World(BIN, n, sim_args=args, rate=1.0)
    ok = False
    try:
        w.gw.start()
        jobs = w.gw.wait_all_terminal(n, 300)
        by = {j[0]: j for j in jobs}
        st = {i: by[w.address(i)] for i in range(n)}
        for i in (0, 1, 5, 6, 7):
            check(st[i][1] == "done", f"device {i} done despite the others: {st[i]}")
            device_on_release(w, i)
        check(st[2][1] == "failed" and "app core" in (st[2][2] or ""),
              f"bad image at boot: failed with reason ({st[2][2]})")
        check(st[3][1] == "reverted" and "old image" in (st[3][2] or ""),
              f"never confirmed: reverted with reason ({st[3][2]})")
        check(st[4][1] == "failed" and "image 1" in (st[4][2] or ""),
              f"net core slot unreadable: failed with reason ({st[4][2]})")
        # issue 21 item 9: the image list after the upload shows the net core image in image 0
        # slot 1; marking it would have updated the app core with the net core's image
        check(st[8][1] == "failed" and "lists it as image 0 slot 1" in (st[8][2] or "") and
              "net core would not be updated" in (st[8][2] or ""),
              f"single-image device: failed with reason ({st[8][2]})")
        for i in range(n):
            no_unconfirmed_test_image(w, i)
        ok = True
    finally:
        w.close(ok)


def case_canary():
    n = 10
    # Canaries are assigned as devices become targets, keeping the share at 20 %: with the
    # udp_devices order that is the 1st and the 6th device (index 0 and 5).
    args = FAST + ["--fault", "0:bad_boot=true", "--fault", "5:bad_boot=true"]
    w = ft.World(BIN, n, sim_args=args, canary=20, rate=0.3)
    ok = False
    try:
        w.gw.start()
        w.gw.wait(lambda j: len(j) == n and sum(1 for r in j if r[3] and r[1] == "failed") == 2,
                  "both canaries to fail", 120)
        time.sleep(3)  # a fixed window on purpose: it proves that no other job starts
        jobs = w.gw.jobs()
        check(all(r[1] == "queued" for r in jobs if not r[3]),
              "non-canary jobs did not start while the canary failed")
        r = w.gw.get("/v1/rollout")
        check(r["halted"] is True and r["halted_by"] == "policy" and
              "canary" in (r["halted_reason"] or ""), f"rollout halted by policy: {r}")
        check("event: rollout-halted" in w.gw.log() and "canary" in w.gw.log(), "halt logged")
        w.gw.post("/v1/rollout/resume")
        jobs = w.gw.wait_all_terminal(n, 240)
        others = [r for r in jobs if not r[3]]
        check(all(r[1] == "done" for r in others), f"after resume the rest finished: {others}")
        ok = True
    finally:
        w.close(ok)


def case_restart():
    n = 10
    w = ft.World(BIN, n, sim_args=["--link", "fast,erase=0,write=0,boot=1500", "--mode", "mixed"],
                 app_size=160000, net_size=80000)
    rng = random.Random(int(time.time()))
    ok = False
    kills = 0
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            w.gw.start()
            jobs = w.gw.jobs()
            if len(jobs) == n and all(j[1] in ft.TERMINAL for j in jobs) and kills >= 10:
                break
            time.sleep(rng.uniform(0.5, 4.0))  # the scenario: killed at a random moment
            w.gw.kill(signal.SIGKILL)
            kills += 1
        else:
            raise ft.Fail("did not converge")
        jobs = w.gw.wait_all_terminal(n, 240)
        check(kills >= 10, f"killed with SIGKILL {kills} times")
        check(all(j[1] == "done" for j in jobs), f"all converged to done: {[j[1] for j in jobs]}")
        con = sqlite3.connect(w.gw.db)
        check(con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check ok")
        dup = con.execute("SELECT count(*) FROM (SELECT address, release_id FROM jobs GROUP BY "
                          "1, 2 HAVING count(*) > 1)").fetchone()[0]
        check(dup == 0, "no job duplicated")
        check(con.execute("SELECT count(*) FROM jobs").fetchone()[0] == n, "no job lost")
        con.close()
        for i in range(n):
            device_on_release(w, i)
        ok = True
    finally:
        w.close(ok)


def case_out_of_range():
    """A BLE device goes out of range mid-upload for 30 s, far longer than a retry budget of
    3 attempts with back-off of at most 4 s would last if every failed attempt counted: the
    link loss and the attempts until bluetoothd drops the device count, the wait does not."""
    n = 3
    args = FAST + ["--temporary-timeout", "3",
                   "--fault", "1:out_of_range_at_chunk=8,out_of_range_ms=30000"]
    w = ft.World(BIN, n, ble=True, sim_args=args,
                 gw_extra="[fleet]\nretry_limit = 3\n")
    ok = False
    try:
        w.gw.start()
        jobs = w.gw.wait_all_terminal(n, 300)
        check(all(j[1] == "done" for j in jobs), f"all done after the absence: {jobs}")
        con = sqlite3.connect(w.gw.db)
        att = con.execute("SELECT attempts FROM jobs WHERE address = ?",
                          (w.address(1),)).fetchone()[0]
        con.close()
        check(att <= 3, f"the absence burned only {att} attempt(s) of 3")
        for i in range(n):
            device_on_release(w, i)
        ok = True
    finally:
        w.close(ok)


def case_watch():
    """`fotactl watch` in a real terminal (tmux) while the fleet rolls out for real."""
    import os
    import re
    import tmux as tmuxlib
    n = 6
    # A slower link so that the uploads last long enough to be watched.
    w = ft.World(BIN, n, sim_args=["--link", "typical,erase=0,write=0,boot=1500"],
                 app_size=200000, net_size=60000)
    t = tmuxlib.Tmux(w.tmp)
    status = os.path.join(w.tmp, "watch-status")
    ok = False
    try:
        w.gw.start()
        t.start(f"{FOTACTL} watch --interval 300 --config {w.gw.conf}; echo $? > {status}; "
                "sleep 60")
        bar = re.compile(r"uploading\s+img[01]\s+\[[#.]+\]\s+\d+\.\d%\s+\d+\.\d KiB/s"
                         r"\s+ETA \d+:\d\d")
        s = t.wait_for(lambda s: bar.search(s), "a live progress bar (image, %, KiB/s, ETA)",
                       60)
        check("Release fw-2.0.0 (2.0.0)" in s, "release line")
        m = re.search(r"(\d+\.\d)%", bar.search(s).group(0))
        first = float(m.group(1))
        s = t.wait_for(lambda s: any(float(x) > first for x in re.findall(
            r"uploading\s+img[01]\s+\[[^]]*\]\s+(\d+\.\d)%", s)), "the percent moving on", 30)
        w.gw.wait_all_terminal(n, 240)
        s = t.wait_for(lambda s: re.search(r"\bdone 6\b", s), "the final counts", 15)
        check("Active devices: 0" in s, "no device left active")
        # watch polls the keyboard with its requests in flight: one q ends it (the bound
        # is far above that, and below the 15 s a blocked HTTP request would take).
        t.run("send-keys", "-t", "w", "q")
        # the shell creates the file before echo writes to it: wait for the line, not the file
        def exit_status():
            try:
                with open(status) as f:
                    text = f.read()
            except FileNotFoundError:
                return None
            return text.strip() if text.endswith("\n") else None
        deadline = time.monotonic() + 10
        while exit_status() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        code = exit_status()
        check(code == "0", f"q quit with 0 (status {code!r})")
        ok = True
    except tmuxlib.TmuxError as e:
        raise ft.Fail(str(e))
    finally:
        t.kill()
        w.close(ok)


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def case_manifest_expiry():
    args = FAST + ["--fault", "1:bad_boot=true"]
    w = ft.World(BIN, 2, sim_args=args, rate=1.0, expires=rfc3339(time.time() + 12))
    ok = False
    try:
        w.gw.start()
        jobs = w.gw.wait_all_terminal(2, 120)
        check([j[1] for j in jobs] == ["done", "failed"] or
              sorted(j[1] for j in jobs) == ["done", "failed"], f"one done, one failed: {jobs}")
        deadline = time.monotonic() + 60
        while w.gw.health()[1].get("manifest", {}).get("freshness") != "expired":
            check(time.monotonic() < deadline, "the manifest is judged expired within 60 s")
            time.sleep(0.5)
        code, h = w.gw.health()
        check(code == 503 and h["status"] == "degraded", f"health degraded while expired: {h}")
        m = w.gw.metrics()
        check(m.get("fotagw_manifest_expired") == 1, "fotagw_manifest_expired 1")
        check(m.get('fotagw_manifest_polls_total{result="accepted"}') == 1, f"one accepted: {m}")
        check(m.get('fotagw_manifest_polls_total{result="not-modified"}', 0) >= 1,
              "expiry judged on a 304")
        log = w.gw.log()
        check("event: manifest-expired" in log, "manifest-expired event logged")
        check("No new jobs start: the release manifest in force has expired" in log, "held")
        # the failed device asked again: its job waits while the manifest is expired
        failed = [j[0] for j in w.gw.jobs() if j[1] == "failed"][0]
        w.gw.post(f"/v1/devices/{failed}/retry")
        polls = sum(v for k, v in m.items() if k.startswith("fotagw_manifest_polls_total"))
        deadline = time.monotonic() + 30
        while sum(v for k, v in w.gw.metrics().items()
                  if k.startswith("fotagw_manifest_polls_total")) < polls + 1:
            check(time.monotonic() < deadline, "one more poll within 30 s")
            time.sleep(0.5)
        st = {j[0]: j[1] for j in w.gw.jobs()}
        check(st[failed] == "queued", f"no job starts while expired: {st[failed]}")
        w.release.publish(sequence=2, expires="2100-01-01T00:00:00Z")
        w.gw.wait(lambda j: any(r[0] == failed and r[1] != "queued" for r in j),
                  "the held job to start once a fresh manifest is in force", 60)
        code, h = w.gw.health()
        check(code == 200 and h["manifest"]["freshness"] == "fresh", f"fresh again: {h}")
        check(w.gw.metrics().get("fotagw_manifest_expired") == 0, "fotagw_manifest_expired 0")
        ok = True
    finally:
        w.close(ok)


def case_no_downgrade():
    args = FAST + ["--fault", "0:app_version=3.0.0"]
    w = ft.World(BIN, 2, sim_args=args, rate=1.0, allow_downgrade=False)
    ok = False
    try:
        w.gw.start()
        jobs = {j[0]: j for j in w.gw.wait_all_terminal(2, 120)}
        newer, older = jobs[w.address(0)], jobs[w.address(1)]
        check(older[1] == "done", f"the device on 1.0.0 is updated: {older}")
        device_on_release(w, 1)
        check(newer[1] == "failed" and "CURRENT_VERSION_IS_NEWER" in (newer[2] or ""),
              f"the device on 3.0.0 refuses 2.0.0 at upload (mcumgr rc 27): {newer}")
        st = ft.device_state(w.sim.port(0))
        check(st["slots"][(0, 0)]["hash"] != w.release.app_hash and
              (0, 1) not in st["slots"], "nothing of 2.0.0 reached its app slots")
        ok = True
    finally:
        w.close(ok)


class SocketBus:
    """A private dbus-daemon on a socket path chosen beforehand (fotagwd is told it first)."""

    def __init__(self, socket):
        if os.path.exists(socket):
            os.unlink(socket)  # a killed daemon leaves its socket file
        address = "unix:path=" + socket
        self.proc = subprocess.Popen(
            ["dbus-daemon", "--config-file", ft.simctl.DBUS_CONF, "--address", address,
             "--nofork", "--nopidfile", "--print-address"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if not self.proc.stdout.readline().startswith("unix:"):
            self.close()
            raise ft.Fail("dbus-daemon did not start")
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def adapter_state(w):
    code, h = w.gw.health()
    return h.get("adapter_state"), w.gw.metrics().get("fotagw_ble_adapter_up")


def case_no_bus():
    w = ft.World(BIN, 2, sim_args=FAST, rate=1.0, gw_extra="")
    # The World's own simulator is UDP only; this case runs BLE on a bus of its own.
    w.sim.close()
    socket = os.path.join(w.tmp, "bus", "system_bus_socket")
    os.makedirs(os.path.dirname(socket))
    conf = open(w.gw.conf).read().replace("[ble]\nenabled = false", "[ble]\nenabled = true")
    conf = conf.replace("udp_devices = " + " ".join(
        f"127.0.0.1:{w.sim.port(i)}" for i in range(2)), "udp_devices =")
    open(w.gw.conf, "w").write(conf)
    w.gw.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="unix:path=" + socket)
    state_dir = os.path.join(w.tmp, "sim-state")
    bus = sim = None
    ok = False
    try:
        w.gw.start()
        st = adapter_state(w)
        check(st == ("unavailable", 0), f"no bus: health and metric say BLE unavailable: {st}")
        check("BLE unavailable: cannot connect to the system bus" in w.gw.log(), "logged once")
        check(w.gw.proc.poll() is None, "fotagwd keeps running without a bus")

        # Device 1 on the typical link: its upload is still running when the bus dies.
        slow = ["--fault", "1:link=typical", "--fault", "1:erase=0", "--fault", "1:write=0"]
        bus = SocketBus(socket)
        sim = ft.simctl.Sim(SIM, devices=2, udp=True, bluez=True, bus=bus, args=FAST + slow,
                            state_dir=state_dir)
        w.sim = sim
        w.gw.wait(lambda j: any(r[0] == ft.simctl.device_address(0) and r[1] == "done" for r in j),
                  "device 0 updated over BLE", 180)
        device_on_release(w, 0)
        check(adapter_state(w) == ("on", 1), f"adapter up: {adapter_state(w)}")
        w.gw.wait(lambda j: any(r[0] == ft.simctl.device_address(1) and r[1] == "uploading" for r in j),
                  "device 1 uploading", 120)

        # The bus dies under fotagwd mid-upload (bluetoothd with it); a new one comes up.
        bus.close()
        sim.close()
        deadline = time.monotonic() + 30
        while "event: ble-bus-lost" not in w.gw.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        check("event: ble-bus-lost" in w.gw.log(), "the lost connection is noticed")
        st = adapter_state(w)
        check(st[0] in ("unavailable", "absent") and st[1] == 0, f"BLE down: {st}")
        bus = SocketBus(socket)
        sim = ft.simctl.Sim(SIM, devices=2, udp=True, bluez=True, bus=bus, args=FAST,
                            state_dir=state_dir)
        w.sim = sim
        jobs = w.gw.wait(lambda j: len(j) == 2 and all(r[1] in ft.TERMINAL for r in j),
                         "device 1 finished after the reconnection", 180)
        check(all(r[1] == "done" for r in jobs), f"both done: {jobs}")
        hist = job_history(w, ft.simctl.device_address(1), w.release.id)
        check("uploading>queued" in ">".join(hist), f"device 1 was cut off mid-upload: {hist}")
        device_on_release(w, 1)
        device_on_release(w, 0)
        check(w.gw.log().count("event: ble-bus-connected") == 2, "connected twice, by itself")
        check(w.gw.proc.poll() is None, "fotagwd never exited")
        ok = True
    finally:
        w.close(ok)
        if bus:
            bus.close()


def job_history(w, address, release_id):
    con = sqlite3.connect(f"file:{w.gw.db}?mode=ro", uri=True, timeout=5)
    try:
        return [r[0] for r in con.execute(
            "SELECT e.to_state FROM events e JOIN jobs j ON j.id = e.job_id WHERE "
            "j.address = ? AND j.release_id = ? AND e.kind = 'job-state' ORDER BY e.id",
            (address, release_id))]
    finally:
        con.close()


def case_name_prefix_reload():
    args = FAST + ["--fault", "0:name=alpha-0", "--fault", "1:name=beta-1"]
    w = ft.World(BIN, 2, ble=True, sim_args=args, rate=1.0)
    # No release at first: alpha-0 joins the registry without ever being connected (once
    # connected, a device lists the SMP service in UUIDs and is a member by that rule).
    for f in ("manifest.json", "manifest.json.sig"):
        os.unlink(os.path.join(w.ng.srv, f))
    conf = open(w.gw.conf).read()
    check("name_prefix = fotagw-sim-" in conf, "the harness' prefix line")
    open(w.gw.conf, "w").write(conf.replace("name_prefix = fotagw-sim-", "name_prefix = alpha-"))
    ok = False
    try:
        w.gw.start()
        deadline = time.monotonic() + 60
        while "name: alpha-0" not in w.gw.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        check("event: device-new, device: " + w.address(0) in w.gw.log(), "alpha-0 registered")
        check("name: beta-1" not in w.gw.log(), "beta-1 is not a fleet device under alpha-")

        conf = open(w.gw.conf).read()
        open(w.gw.conf, "w").write(conf.replace("name_prefix = alpha-", "name_prefix = beta-"))
        w.gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "event: reloaded" not in w.gw.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        check("config: ble.name_prefix applied" in w.gw.log(), "the new prefix is applied")
        # A release right after the reload, well inside alpha-0's last sighting window.
        w.release = ft.Release(FOTACTL, w.tmp, w.ng.srv, version="2.0.0", seq=1, rate=1.0)
        w.gw.wait(lambda j: job_history(w, w.address(1), w.release.id)[-1:] == ["done"],
                  "beta-1 updated", 180)
        device_on_release(w, 1)
        # alpha-0's row exists (it is in the registry), but its job never started.
        hist = job_history(w, w.address(0), w.release.id)
        check(hist == ["queued"], f"alpha-0's job never left queued: {hist}")
        st = ft.device_state(w.sim.port(0))
        check(st["versions"].get("net") != "2.0.0", f"alpha-0 still runs its old image: {st}")
        ok = True
    finally:
        w.close(ok)


def terminal_safe(data, what):
    text = data.decode("utf-8", "replace")
    bad = [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f]
    check(not bad, f"{what}: control characters reach the terminal: {bad!r}")


def case_hostile_rsn():
    # ESC ] 0 ; title BEL, clear screen, then a newline and a forged emergency journal line.
    rsn = r"\x1b]0;pwned\x07\x1b[2J\x0a<0>event: rollout-halted by: operator"
    args = FAST + ["--fault", "0:app_version=3.0.0", "--fault", f"0:rsn={rsn}"]
    w = ft.World(BIN, 1, sim_args=args, rate=1.0, allow_downgrade=False)
    ok = False
    try:
        w.gw.start()
        jobs = w.gw.wait_all_terminal(1, 120)
        reason = jobs[0][2] or ""
        check(jobs[0][1] == "failed" and "pwned" in reason, f"refused with the rsn: {jobs}")
        check("\x1b" in reason, "the store keeps the device's text as it came (data)")
        log = w.gw.log()
        check("\x1b" not in log and "\x07" not in log, "no raw ESC/BEL in fotagwd's log")
        check(not any(line.startswith("<0>") for line in log.splitlines()),
              "no forged emergency-level line in fotagwd's log")
        check("\\x1b]0;pwned\\x07" in log and "\\x0a<0>event: rollout-halted" in log,
              "the rsn is in the log, escaped, within its one line")
        cfg = ["--url", w.gw.url]
        for cmd in (["devices", "--state", "failed"], ["device", w.address(0)], ["rollout"],
                    ["devices", "--json"], ["device", "--json", w.address(0)]):
            p = subprocess.run([FOTACTL, *cmd, *cfg], capture_output=True, timeout=30)
            check(p.returncode == 0, f"fotactl {cmd}: exit {p.returncode} {p.stderr!r}")
            terminal_safe(p.stdout, "fotactl " + " ".join(cmd))
        p = subprocess.run([FOTACTL, "device", w.address(0), *cfg], capture_output=True,
                           timeout=30)
        check(b"\\x1b]0;pwned\\x07" in p.stdout, f"fotactl device shows it escaped: "
              f"{p.stdout!r}")
        ok = True
    finally:
        w.close(ok)


CASES = {"rollout-udp": case_rollout_udp, "rollout-ble": case_rollout_ble, "faults": case_faults,
         "canary": case_canary, "restart": case_restart, "watch": case_watch,
         "out-of-range": case_out_of_range, "manifest-expiry": case_manifest_expiry,
         "no-downgrade": case_no_downgrade, "no-bus": case_no_bus,
         "name-prefix-reload": case_name_prefix_reload, "hostile-rsn": case_hostile_rsn}

try:
    CASES[CASE]()
except ft.Fail as e:
    print("FAIL:", e)
    sys.exit(1)
print(f"fleet/{CASE}: passed")

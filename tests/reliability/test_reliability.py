#!/usr/bin/env python3
"""Reliability suite (issue 10): the whole system (fotagwd + fotagw-sim + nginx, started by
tests/fleet-it/fleettest.py) under chaos, faults, load and a full disk. docs/reliability.md.

  test_reliability.py CASE --fotagwd F --fotactl C --sim S --fd-cycle D

CASE:
  chaos-bluetoothd  BLE rollout; the simulator (the fake bluetoothd and every device in it) is
                    stopped and started again on the same state at random moments: fotagwd
                    loses org.bluez and every link, the devices power-cycle. End: every device
                    on the release or terminal with a reason, integrity_check ok, one job per
                    device, fotagwd's fd count back where it was.
  chaos-server      the release server (nginx) is killed with SIGKILL while the bundle
                    downloads (served at 256 KiB/s) and restarted later, several times: the
                    download resumes and the rollout completes.
  faults            every fault of docs/simulator.md "Faults" alone and some combined, one
                    device each, one rollout over UDP: each ends in its expected state.
  resources         10,000 devices in the registry and 8 uploads at once: fotagwd's peak RSS,
                    measured with a large and a small bundle; the difference must stay far
                    below one bundle per device (bundles are streamed from disk).
  fd-cycle          1,000 BLE connect/disconnect cycles (AcquireWrite/AcquireNotify fds)
                    through lib/bluez and the ble transport: no fd leaks, in the client or in
                    the fake bluetoothd.
  disk-full         the database lives on a small tmpfs that fills up mid-rollout: fotagwd
                    reports it, keeps running and answering the API, starts no new job;
                    after space is freed and a restart the rollout completes. Needs root
                    (mount); exit 77 otherwise.
  read-only         the database's file system is read-only when fotagwd starts: reported as
                    such, the daemon keeps running (API, no jobs). Needs root.

FGW_SOAK=1 makes the chaos and cycle counts larger (`make soak`). Exit 0 pass, 1 fail, 77 skip.
"""
import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fleet-it"))
import fleettest as ft  # noqa: E402
from fleettest import check  # noqa: E402
import simctl  # noqa: E402  (fleettest put tests/sim on the path)

SOAK = os.environ.get("FGW_SOAK") == "1"
FAST = ["--link", "fast,erase=0,write=0,boot=1500"]


class Skip(Exception):
    pass


def proc_status(pid, key):
    """A kB figure from /proc/PID/status (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise ft.Fail(f"no {key} for {pid}")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid):
    """What the process's fds are, e.g. {"socket": 5, "/path/db": 1} (socket inodes folded)."""
    kinds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            t = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        t = re.sub(r"\[\d+\]$", "", t)
        kinds[t] = kinds.get(t, 0) + 1
    return kinds


def sockets_of(pid):
    """ss lines for the process's sockets (for failure messages)."""
    p = subprocess.run(["ss", "-anpt", "-anpu", "-anpx"], capture_output=True, text=True)
    return "\n".join(x for x in p.stdout.splitlines() if f"pid={pid}," in x)


def set_conf(gw, section, **keys):
    """Adds keys to a section of the gateway's config (before start)."""
    text = open(gw.conf).read()
    lines = "".join(f"{k} = {v}\n" for k, v in keys.items())
    for k in keys:
        text = re.sub(rf"(?m)^{k} = .*\n", "", text)
    text = text.replace(f"[{section}]\n", f"[{section}]\n{lines}", 1)
    with open(gw.conf, "w") as f:
        f.write(text)


def db_checks(w, n):
    con = sqlite3.connect(w.gw.db)
    try:
        check(con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check ok")
        check(con.execute("PRAGMA journal_mode").fetchone()[0] == "wal", "database in WAL mode")
        dup = con.execute("SELECT count(*) FROM (SELECT address, release_id FROM jobs GROUP BY "
                          "1, 2 HAVING count(*) > 1)").fetchone()[0]
        check(dup == 0, "no job duplicated")
        check(con.execute("SELECT count(*) FROM jobs").fetchone()[0] == n,
              f"no job lost ({n} jobs, one per device)")
    finally:
        con.close()


def end_state_ok(w, jobs, away=()):
    """Every device runs the release (the device says so) or its job ended with a reason and
    it was left on a confirmed image. Devices in @away are gone for good: only the reason."""
    by = {j[0]: j for j in jobs}
    done = 0
    for i in range(w.devices):
        j = by[w.address(i)]
        if i in away:
            check(j[1] == "failed" and j[2], f"device {i} (gone): {j[1]} with reason '{j[2]}'")
            continue
        st = ft.device_state(w.sim.port(i))
        s0 = st["slots"].get((0, 0))
        if j[1] == "done":
            done += 1
            check(s0 and s0["hash"] == w.release.app_hash and s0.get("confirmed") and
                  st["versions"].get("net") == w.release.version,
                  f"device {i}: done and running the release (both cores)")
        else:
            check(j[1] in ft.TERMINAL and j[2], f"device {i}: {j[1]} with reason '{j[2]}'")
            check(s0 and s0.get("confirmed") and
                  not any(e.get("pending") for e in st["slots"].values()),
                  f"device {i}: left on a confirmed image, nothing pending")
    return done


def restart_sim(sim, env, pause):
    """Stops the simulator (it saves every device's state) and starts it again on the same
    state dir and UDP ports: for fotagwd, bluetoothd went away and came back, and every device
    power-cycled."""
    rc = sim.stop()
    if rc != 0:
        raise ft.Fail(f"fotagw-sim exited {rc} on SIGTERM")
    time.sleep(pause)
    sim._stderr = open(sim.stderr_path, "a")
    sim.proc = subprocess.Popen(sim.cmd, stdout=subprocess.PIPE, stderr=sim._stderr, env=env,
                                text=True)
    sim.ready_line = sim._wait_ready(30)


# ---- chaos ------------------------------------------------------------------------------------

def case_chaos_bluetoothd(b):
    n = 12 if SOAK else 6
    kills_wanted = 30 if SOAK else 6
    # The typical BLE link (~32 kB/s): uploads take seconds, so restarts land mid-upload.
    w = ft.World(b, n, ble=True, sim_args=["--link", "typical,erase=0,boot=1500", "--mode",
                                           "mixed", "--seed", "11", "--disconnect-delay", "100"],
                 app_size=200000, net_size=60000)
    rng = random.Random(int(time.time()))
    ok = False
    try:
        # Idle baseline first: the manifest appears only once fotagwd runs and is counted.
        srv = w.ng.srv
        held = [x for x in os.listdir(srv) if x.startswith("manifest.json")]
        for x in held:
            os.rename(os.path.join(srv, x), os.path.join(srv, "." + x))
        w.gw.start()
        time.sleep(3)
        fds0 = fd_count(w.gw.proc.pid)
        kinds0 = fd_kinds(w.gw.proc.pid)
        socks0 = sockets_of(w.gw.proc.pid)
        for x in held:
            os.rename(os.path.join(srv, "." + x), os.path.join(srv, x))
        w.gw.wait(lambda j: len(j) == n, "the release to become active", 60)
        kills = 0
        deadline = time.monotonic() + (1200 if SOAK else 300)
        while kills < kills_wanted and time.monotonic() < deadline:
            time.sleep(rng.uniform(1.0, 5.0))
            jobs = w.gw.jobs()
            if len(jobs) == n and all(j[1] in ft.TERMINAL for j in jobs):
                break
            restart_sim(w.sim, w.bus.env, rng.uniform(0.0, 2.0))
            kills += 1
            check(w.gw.proc.poll() is None, f"fotagwd alive after bluetoothd restart {kills}")
        check(kills >= min(kills_wanted, 3), f"bluetoothd + devices restarted {kills} times "
              "mid-rollout")
        jobs = w.gw.wait_all_terminal(n, 600 if SOAK else 300)
        done = end_state_ok(w, jobs)
        check(done >= n // 2, f"{done}/{n} devices on the release, the rest ended with a reason")
        db_checks(w, n)
        log = w.gw.log()
        check(log.count("event: adapter, state: absent") >= 1,
              "fotagwd noticed bluetoothd leaving the bus")
        time.sleep(2)
        fds1 = fd_count(w.gw.proc.pid)
        # libcurl keeps one connection to the release server open for the next poll.
        kept = sum(1 for x in sockets_of(w.gw.proc.pid).splitlines()
                   if x.startswith("tcp") and "ESTAB" in x and f":{w.ng.port} " in x)
        print(f"figure: fotagwd fds {fds0} idle before the rollout, {fds1} idle after it and "
              f"{kills} bluetoothd restarts ({kept} kept-alive HTTP connection)")
        check(kept <= 1, "at most one kept-alive connection to the release server")
        fds1 -= kept
        check(fds1 <= fds0, f"no fd leaked across the restarts ({fds0} -> {fds1}): "
              f"{kinds0} -> {fd_kinds(w.gw.proc.pid)}\nsockets before:\n{socks0}\n"
              f"after:\n{sockets_of(w.gw.proc.pid)}")
        ok = True
    finally:
        w.close(ok)


def case_chaos_server(b):
    n = 4
    outages_wanted = 8 if SOAK else 3
    w = ft.World(b, n, sim_args=FAST + ["--mode", "mixed"], app_size=700000, net_size=200000)
    ok = False
    try:
        # Serve manifest, signature and bundle from /throttle/ (256 KiB/s): the bundle takes
        # seconds to download, so the server can go away in the middle of it.
        srv, thr = w.ng.srv, os.path.join(w.ng.srv, "throttle")
        for name in os.listdir(srv):
            if os.path.isfile(os.path.join(srv, name)):
                os.rename(os.path.join(srv, name), os.path.join(thr, name))
        bundle = [x for x in os.listdir(thr) if x.endswith(".zip")][0]
        size = os.path.getsize(os.path.join(thr, bundle))
        set_conf(w.gw, "release", manifest_url=w.ng.base + "/throttle/manifest.json",
                 poll_interval_s=10)
        cache = os.path.join(w.gw.tmp, "cache")
        w.gw.start()
        outages, last = 0, 0
        deadline = time.monotonic() + 240
        while outages < outages_wanted and time.monotonic() < deadline:
            part = [os.path.join(cache, x) for x in os.listdir(cache) if x.endswith(".part")]
            have = os.path.getsize(part[0]) if part else 0
            if have > last + 65536 and have < size - 200000:
                w.ng.kill()
                outages += 1
                last = os.path.getsize(part[0])
                print(f"server killed at {last}/{size} bytes of the bundle", flush=True)
                time.sleep(random.uniform(1.0, 4.0))
                check(w.gw.proc.poll() is None, f"fotagwd alive through outage {outages}")
                w.ng.start()
            elif any(x.endswith(".zip") for x in os.listdir(cache)):
                break
            time.sleep(0.1)
        check(outages == outages_wanted, f"release server killed {outages} times mid-download")
        jobs = w.gw.wait_all_terminal(n, 300)
        check(all(j[1] == "done" for j in jobs), f"all {n} done: {[j[1] for j in jobs]}")
        end_state_ok(w, jobs)
        acc = w.ng.access_log()
        check(re.search(rf'GET /throttle/{re.escape(bundle)} HTTP/1.1" 206 ', acc) is not None,
              "the download was resumed with a Range request (206)")
        check(not [x for x in os.listdir(cache) if x.endswith(".part")], "no partial file left")
        db_checks(w, n)
        ok = True
    finally:
        w.close(ok)


# ---- fault matrix ------------------------------------------------------------------------------

# (scenario keys, expected job state, substring of the reason or None). Odd indexes run swap,
# even ones overwrite-only (--mode mixed): no_confirm needs swap, so it sits on odd indexes.
MATRIX = [
    ("", "done", None),                                                   # 0 control
    ("disconnect_at_chunk=15", "done", None),                             # 1
    ("disconnect_prob=0.03", "done", None),                               # 2
    ("drop_notify_prob=0.03", "done", None),                              # 3
    ("rsp_delay_ms=150", "done", None),                                   # 4
    ("error=busy,error_at_chunk=10", "done", None),                       # 5
    ("error=nomem,error_prob=0.03", "done", None),                        # 6
    ("reboot_at_chunk=20", "done", None),                                 # 7
    ("bad_boot=true", "failed", "app core"),                              # 8
    ("no_confirm=true,watchdog_ms=3000", "reverted", "old image"),        # 9
    ("net_unreadable=true", "failed", "image 1"),                         # 10
    ("out_of_range_at_chunk=12,out_of_range_ms=4000", "done", None),      # 11
    ("out_of_range=true,out_of_range_ms=0", "failed", "gave up"),         # 12
    ("out_of_range_at_chunk=30,out_of_range_ms=0", "failed", "gave up"),  # 13
    # combinations
    ("disconnect_prob=0.02,drop_notify_prob=0.02,rsp_delay_ms=50", "done", None),   # 14
    ("error=busy,error_prob=0.05,reboot_at_chunk=25", "done", None),                # 15
    ("bad_boot=true,disconnect_at_chunk=8", "failed", "app core"),                  # 16
    ("no_confirm=true,watchdog_ms=3000,disconnect_prob=0.02", "reverted", "old image"),  # 17
    ("reboot_at_chunk=5,out_of_range_at_chunk=40,out_of_range_ms=3000", "done", None),  # 18
]


def faults_rollout(b, matrix, seed):
    n = len(matrix)
    args = FAST + ["--mode", "mixed", "--seed", str(seed)]
    for i, (keys, _, _) in enumerate(matrix):
        if keys:
            args += ["--fault", f"{i}:{keys}"]
    w = ft.World(b, n, sim_args=args, rate=1.0, app_size=120000, net_size=40000)
    set_conf(w.gw, "fleet", retry_limit=4, backoff_max_s=2)
    set_conf(w.gw, "upload", chunk_timeout_ms=1500)
    ok = False
    try:
        w.gw.start()
        jobs = w.gw.wait_all_terminal(n, 420)
        by = {j[0]: j for j in jobs}
        for i, (keys, want, why) in enumerate(matrix):
            j = by[w.address(i)]
            check(j[1] == want and (why is None or why in (j[2] or "")),
                  f"[{keys or 'no fault'}]: {j[1]} ({j[2]})")
        end_state_ok(w, jobs, away={i for i, m in enumerate(matrix)
                                    if "out_of_range_ms=0" in m[0]})
        db_checks(w, n)
        r = w.gw.get("/v1/rollout")
        check(r["counts"]["done"] == sum(1 for m in matrix if m[1] == "done"),
              f"the API counts agree: {r['counts']}")
        ok = True
    finally:
        w.close(ok)


def case_faults(b):
    # udp_devices is one config line (at most 198 characters): 11 devices per rollout at most.
    # Two rollouts; each half keeps its no_confirm device on an odd (swap) index.
    faults_rollout(b, MATRIX[:10], 5)
    faults_rollout(b, MATRIX[10:], 6)


# ---- resources ----------------------------------------------------------------------------------

def seed_registry(db, count):
    """count BLE devices nobody will see (BLE is off): every one gets a job that waits."""
    con = sqlite3.connect(db)
    now = int(time.time() * 1000)
    with con:
        con.executemany(
            "INSERT INTO devices (address, transport, name, grp, created_at) "
            "VALUES (?, 'ble', ?, 'default', ?)",
            [("D0:00:00:%02X:%02X:%02X" % (i >> 16, (i >> 8) & 255, i & 255),
              f"seeded-{i:05d}", now) for i in range(count)])
    con.close()


def resources_run(b, app_size, net_size, registry):
    n = 8
    w = ft.World(b, n, sim_args=FAST + ["--mode", "mixed"], app_size=app_size,
                 net_size=net_size)
    ok = False
    try:
        # Create the schema with a first start, then fill the registry behind its back.
        conf = open(w.gw.conf).read()
        set_conf(w.gw, "release", manifest_url="")
        w.gw.start()
        w.gw.kill(signal.SIGTERM)
        seed_registry(w.gw.db, registry)
        with open(w.gw.conf, "w") as f:
            f.write(conf)
        w.gw.start()
        pid = w.gw.proc.pid
        rss0 = proc_status(pid, "VmRSS")
        bundle = [x for x in os.listdir(w.ng.srv) if x.endswith(".zip")][0]
        bsize = os.path.getsize(os.path.join(w.ng.srv, bundle))
        peak_active = 0
        deadline = time.monotonic() + 300
        udp = None
        while time.monotonic() < deadline:
            udp = [j for j in w.gw.jobs() if j[0].startswith("udp:")]
            active = sum(1 for j in udp if j[1] == "uploading")
            peak_active = max(peak_active, active)
            if len(udp) == n and all(j[1] in ft.TERMINAL for j in udp):
                break
            time.sleep(0.3)
        check(len(udp) == n and all(j[1] == "done" for j in udp),
              f"the 8 UDP devices done: {[j[1] for j in udp]}")
        hwm = proc_status(pid, "VmHWM")
        fds = fd_count(pid)
        con = sqlite3.connect(w.gw.db)
        total_jobs = con.execute("SELECT count(*) FROM jobs").fetchone()[0]
        con.close()
        check(total_jobs == registry + n, f"a job per device: {total_jobs}")
        h = w.gw.get("/v1/health")
        check(h is not None, "API answers with the registry loaded")
        ok = True
        return {"rss_start_kb": rss0, "hwm_kb": hwm, "bundle_bytes": bsize,
                "peak_uploading": peak_active, "fds": fds}
    finally:
        w.close(ok)


def case_resources(b):
    with open(b["fotagwd"], "rb") as f:
        if b"__asan_init" in f.read():
            raise Skip("fotagwd is built with ASan: its RSS (shadow memory, quarantine) says "
                       "nothing about fotagwd's own")
    registry = 10000
    big = resources_run(b, 900000, 200000, registry)
    small = resources_run(b, 40000, 16000, registry)
    print("figure: " + json.dumps({"registry": registry, "big": big, "small": small}))
    check(big["peak_uploading"] >= 6, f"uploads overlapped ({big['peak_uploading']} at once)")
    growth = (big["hwm_kb"] - small["hwm_kb"]) * 1024
    # Holding the bundle (or an image) whole per device would cost >= 8 x its size; streaming
    # from disk costs a few chunk buffers per device. Allow one bundle's worth in all.
    delta = big["bundle_bytes"] - small["bundle_bytes"]
    check(growth < 8 * delta // 2,
          f"peak RSS grows by {growth // 1024} kB for a {delta // 1024} kB larger bundle with 8 "
          f"uploads (a copy per device would be >= {8 * delta // 1024} kB): not held per device")
    check(big["hwm_kb"] < 128 * 1024, f"peak RSS {big['hwm_kb']} kB with {registry} devices "
          "stays under 128 MiB")


# ---- fd cycles ------------------------------------------------------------------------------

def case_fd_cycle(b):
    cycles = 10000 if SOAK else 1000
    links = 8
    sim_args = ["--link", "fast", "--disconnect-delay", "20"]
    with simctl.Bus() as bus, simctl.Sim(b["sim"], devices=links, bluez=True, bus=bus,
                                         args=sim_args) as sim:
        spid = sim.proc.pid
        sfd0 = fd_count(spid)
        addrs = [sim.address(i) for i in range(links)]
        p = subprocess.run([b["fd-cycle"], str(cycles)] + addrs, env=bus.env,
                           capture_output=True, text=True, timeout=1800 if SOAK else 500)
        print(p.stderr[-3000:])
        res = json.loads(p.stdout.strip().splitlines()[-1])
        print("figure: " + json.dumps(res))
        check(p.returncode == 0 and res["cycles"] == cycles and res["failed"] == 0,
              f"{res['cycles']} connect/disconnect cycles, {res['failed']} failed")
        check(res["acquired"], "every link ran on AcquireWrite/AcquireNotify fds")
        check(res["fds_end"] == res["fds_warm"],
              f"client fds after warm-up {res['fds_warm']}, after all cycles {res['fds_end']}")
        time.sleep(1)
        sfd1 = fd_count(spid)
        print(f"figure: fake bluetoothd fds {sfd0} before, {sfd1} after")
        check(sfd1 == sfd0, f"the fake bluetoothd's fds are back to {sfd0} ({sfd1})")
        check(sim.proc.poll() is None, "the simulator is still running")


# ---- disk full / read-only ------------------------------------------------------------------

def mount_tmpfs(path, size):
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise Skip(f"cannot mount a tmpfs ({p.stderr.strip()}): needs root")


def umount(path):
    subprocess.run(["umount", path], capture_output=True)


def fill(path):
    """Writes a file until the file system is full."""
    # Unbuffered: a buffered file would raise ENOSPC again when it closes, flushing what the
    # full file system already refused.
    fd = os.open(os.path.join(path, "filler"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)


def case_disk_full(b):
    if os.geteuid() != 0:
        raise Skip("needs root to mount a tmpfs")
    n = 11  # 8 at once: three wait in the queue when the disk fills
    w = ft.World(b, n, sim_args=FAST + ["--mode", "mixed"], app_size=300000, net_size=80000)
    mnt = tempfile.mkdtemp(prefix="fgw-dbfs-")
    mounted = False
    ok = False
    try:
        mount_tmpfs(mnt, "8m")
        mounted = True
        db = os.path.join(mnt, "fotagw.db")
        set_conf(w.gw, "store", path=db)
        set_conf(w.gw, "fleet", progress_flush_s=1)
        w.gw.db = db
        w.gw.start()
        w.gw.wait(lambda j: sum(1 for r in j if r[1] == "uploading") >= 2, "uploads", 60)
        fill(mnt)
        t_full = time.monotonic()
        while "Database write failed" not in w.gw.log():
            if time.monotonic() - t_full > 60 or w.gw.proc.poll() is not None:
                raise ft.Fail(f"fotagwd did not report the full disk (alive: "
                              f"{w.gw.proc.poll() is None})")
            time.sleep(0.2)
        log = w.gw.log()
        line = [x for x in log.splitlines() if "Database write failed" in x][0]
        print("reported: " + line)
        check("No space left" in line or "full" in line, "the error names the full disk")
        cut = len(log)
        queued = sum(1 for j in w.gw.jobs() if j[1] == "queued")
        check(queued >= 1, f"{queued} jobs waiting when the disk filled")
        time.sleep(8)
        check(w.gw.proc.poll() is None, "fotagwd still running 8 s later")
        h = w.gw.get("/v1/health")
        r = w.gw.get("/v1/rollout")
        check(h is not None and r is not None, f"API answers: health {h}")
        after = w.gw.log()[cut:]
        started = [x for x in after.splitlines() if "to: connecting" in x]
        check(not started, f"no job started after the failure ({len(started)})")
        check(sum(1 for j in w.gw.jobs() if j[1] == "queued") == queued,
              f"the {queued} waiting jobs still wait")
        check(log.count("Database write failed") == 1, "reported once, not once per write")
        # Space back, restart: the rollout completes and the database is sound.
        os.unlink(os.path.join(mnt, "filler"))
        w.gw.kill(signal.SIGTERM)
        w.gw.start()
        jobs = w.gw.wait_all_terminal(n, 240)
        check(all(j[1] == "done" for j in jobs),
              f"after a restart all done: {[j[1] for j in jobs]}")
        db_checks(w, n)
        ok = True
    finally:
        w.close(ok)
        if mounted:
            umount(mnt)
        os.rmdir(mnt)


def case_read_only(b):
    """A database on a file system that is read-only when fotagwd starts (e.g. remounted after
    errors). The real condition can only be made at start: Linux refuses to remount a file
    system read-only while a process holds a file on it open for writing."""
    if os.geteuid() != 0:
        raise Skip("needs root to mount a tmpfs")
    n = 4
    w = ft.World(b, n, sim_args=FAST, app_size=60000, net_size=20000)
    mnt = tempfile.mkdtemp(prefix="fgw-dbfs-")
    mounted = False
    ok = False
    try:
        mount_tmpfs(mnt, "8m")
        mounted = True
        w.gw.db = os.path.join(mnt, "fotagw.db")
        set_conf(w.gw, "store", path=w.gw.db)
        w.gw.start()
        w.gw.wait(lambda j: len(j) == n, "the jobs to exist", 60)
        w.gw.kill(signal.SIGTERM)
        p = subprocess.run(["mount", "-o", "remount,ro", mnt], capture_output=True, text=True)
        check(p.returncode == 0, f"database file system remounted read-only {p.stderr}")
        cut = len(w.gw.log())
        w.gw.proc = subprocess.Popen([w.gw.fotagwd, "--config", w.gw.conf],
                                     stderr=open(w.gw.log_path, "a"), stdout=subprocess.DEVNULL)
        time.sleep(8)
        log = w.gw.log()[cut:]
        print("fotagwd on a read-only database:\n" + log[-2000:])
        check(re.search(r"(?i)read-only|readonly", log) is not None,
              "the read-only database is reported as such")
        check(w.gw.proc.poll() is None, "fotagwd keeps running on a read-only database")
        check(w.gw.get("/v1/health") is not None, "the API answers")
        check("to: connecting" not in log, "no job starts")
        ok = True
    finally:
        w.close(ok)
        if mounted:
            umount(mnt)
        os.rmdir(mnt)


CASES = {"chaos-bluetoothd": case_chaos_bluetoothd, "chaos-server": case_chaos_server,
         "faults": case_faults, "resources": case_resources, "fd-cycle": case_fd_cycle,
         "disk-full": case_disk_full, "read-only": case_read_only}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--fotagwd", required=True)
    ap.add_argument("--fotactl", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--fd-cycle", required=True)
    a = ap.parse_args()
    b = {"fotagwd": a.fotagwd, "fotactl": a.fotactl, "sim": a.sim, "fd-cycle": a.fd_cycle}
    t0 = time.monotonic()
    try:
        CASES[a.case](b)
    except Skip as e:
        print("SKIP:", e)
        return 77
    except ft.Fail as e:
        print("FAIL:", e)
        return 1
    print(f"reliability/{a.case}: passed in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

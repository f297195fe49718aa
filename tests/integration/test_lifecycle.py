#!/usr/bin/env python3
"""fotagwd under a fake systemd: READY=1, WATCHDOG=1, STOPPING=1, exit 0 within 2 s of SIGTERM.

Also: SIGHUP reloads the log level and the fleet's keys, each logged; a database newer than the build is refused with a clear
message and exit 1.
"""
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

FOTAGWD = sys.argv[1]


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def read_notify(sock, want, deadline):
    """Collects notify datagrams until one carries `want`; returns all seen."""
    seen = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            break
        seen.extend(msg.split("\n"))
        if want in seen:
            return seen
    fail(f"no {want} within the deadline; saw {seen}")


def main():
    with tempfile.TemporaryDirectory(prefix="fgw-lifecycle-") as tmp:
        conf = os.path.join(tmp, "fotagw.conf")
        db = os.path.join(tmp, "fotagw.db")
        with open(conf, "w") as f:
            f.write(f"[log]\nlevel = info\n[store]\npath = {db}\n[api]\nenabled = false\n[ble]\nenabled = false\n")
        sock_path = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        env = dict(os.environ, NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="200000")
        env.pop("WATCHDOG_PID", None)
        errlog = open(os.path.join(tmp, "stderr"), "w+")
        p = subprocess.Popen([FOTAGWD, "--config", conf], env=env, stderr=errlog)
        try:
            read_notify(sock, "READY=1", time.monotonic() + 10)
            # Several pings: the watchdog timer runs, not just a ping at start.
            read_notify(sock, "WATCHDOG=1", time.monotonic() + 2)
            read_notify(sock, "WATCHDOG=1", time.monotonic() + 2)

            # SIGHUP: reload raises the level to debug, applies a fleet key (the fleet takes
            # it: tests/unit/test-fleet.c, one test per key), names a key that needs a
            # restart, and the daemon keeps running.
            fleet = "[fleet]\nretry_limit = 3\n[upload]\nwindow = 2\n"
            ble = "[ble]\nenabled = false\nmax_connections = 4\n"

            def reload(level):
                with open(conf, "w") as f:
                    f.write(f"[log]\nlevel = {level}\n[store]\npath = {db}\n{fleet}"
                            f"[api]\nenabled = false\n{ble}")
                p.send_signal(signal.SIGHUP)
                read_notify(sock, "RELOADING=1", time.monotonic() + 5)
                read_notify(sock, "READY=1", time.monotonic() + 5)
                if p.poll() is not None:
                    fail("daemon exited on SIGHUP")

            reload("debug")
            # The new level is in force at once: at warning, the notice that ends this reload
            # is not written (READY=1 comes after it); back at info for the stop.
            reload("warning")
            reload("info")

            t0 = time.monotonic()
            p.send_signal(signal.SIGTERM)
            read_notify(sock, "STOPPING=1", time.monotonic() + 2)
            rc = p.wait(timeout=5)
            took = time.monotonic() - t0
            if rc != 0:
                fail(f"exit status {rc}")
            if took > 2.0:
                fail(f"took {took:.2f}s to exit after SIGTERM")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        errlog.seek(0)
        log = errlog.read()
        for needle in ("<5>event: started", "<5>config: log.level applied",
                       "<5>config: fleet.retry_limit applied", "<5>config: upload.window applied",
                       "<5>config: ble.max_connections changed, but takes effect only after a restart",
                       "<5>event: reloaded, keys-applied: 3", "<5>event: stopped"):
            if needle not in log:
                fail(f"log lacks {needle!r}:\n{log}")
        # Three reloads, each hiding or showing notices: debug → warning hides the "reloaded"
        # of the second; warning → info hides the "reload" and "applied" of the third.
        if (log.count("<5>event: reload,") != 2 or log.count("<5>event: reloaded") != 2
                or log.count("<5>config: log.level applied") != 2):
            fail(f"log.level did not take effect at each reload:\n{log}")
        if not all(l[:3] in ("<3>", "<4>", "<5>", "<6>", "<7>") for l in log.splitlines()):
            fail(f"a log line without a priority prefix:\n{log}")

        # A database from a newer fotagw is refused, untouched, with a clear message.
        con = sqlite3.connect(db)
        version = con.execute("PRAGMA user_version").fetchone()[0]
        con.execute(f"PRAGMA user_version = {version + 5}")
        con.commit()
        con.close()
        r = subprocess.run([FOTAGWD, "--config", conf], capture_output=True, text=True,
                           timeout=10, env=dict(os.environ, NOTIFY_SOCKET=""))
        if r.returncode != 1 or "newer" not in r.stderr:
            fail(f"newer database: rc {r.returncode}, stderr {r.stderr!r}")
        con = sqlite3.connect(db)
        if con.execute("PRAGMA user_version").fetchone()[0] != version + 5:
            fail("newer database was modified")
        print("lifecycle ok: READY, WATCHDOG, RELOADING, STOPPING, exit 0 in %.2fs" % took)


main()

#!/usr/bin/env python3
"""`fotactl watch` in a real terminal (tmux): against a running fotagwd whose job rows the test
moves on (upload offsets, a failure, a finished device), the view must redraw with the new
offsets and a measured rate, the new failure and its reason, and the new counts; `q` quits
with exit status 0 and leaves the terminal as it was.

The variant during a real simulated rollout (live progress from the fleet: percent, KiB/s and
ETA) is tests/fleet-it/test_fleet.py watch.

usage: test_watch.py FOTAGWD FOTACTL
"""
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from apitest import Daemon, Fail, address, check, free_port, seed  # noqa: E402
import tmux as tmuxlib  # noqa: E402


class Tmux(tmuxlib.Tmux):
    """The shared helper, failing the way this test reports failures."""

    def run(self, *args, check_rc=True):
        try:
            return super().run(*args, check_rc=check_rc)
        except tmuxlib.TmuxError as e:
            raise Fail(str(e))

    def wait_for(self, pred, what, timeout=10):
        try:
            return super().wait_for(pred, what, timeout)
        except tmuxlib.TmuxError as e:
            raise Fail(str(e))


FOTAGWD, FOTACTL = sys.argv[1], sys.argv[2]


def update(db, sql, *args):
    con = sqlite3.connect(db, timeout=5)
    con.execute(sql, args)
    con.commit()
    con.close()


def device_line(screen, addr):
    for line in screen.splitlines():
        if line.startswith(addr):
            return line
    return None


def wait_unanswered_request(port, timeout=10):
    """Until a connection to @port on loopback holds request bytes nobody read (the server's
    receive queue in /proc/net/tcp is not empty)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(path) as f:
                    rows = f.read().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                cols = row.split()
                local_port = int(cols[1].rsplit(":", 1)[1], 16)
                rx_queue = int(cols[4].split(":")[1], 16)
                if local_port == port and cols[3] == "01" and rx_queue > 0:
                    return
        time.sleep(0.02)
    raise Fail("watch sent no request to the stopped gateway")


def main():
    if not shutil.which("tmux"):
        print("tmux not installed")
        return 77
    with tempfile.TemporaryDirectory(prefix="fgw-watch-") as tmp:
        d = Daemon(FOTAGWD, tmp, free_port())
        seed(d.db, 60)
        d.start()
        tmux = Tmux(tmp)
        status = os.path.join(tmp, "status")
        up = address(3)  # uploading in the seed
        try:
            tmux.run("new-session", "-d", "-s", "w", "-x", "150", "-y", "60",
                     f"{FOTACTL} watch --interval 200 --config {d.conf}; "
                     f"echo $? > {status}; sleep 30")
            s = tmux.wait_for(lambda s: "Active devices: 31" in s, "the first frame")
            check("Release r2 (1.1.0)" in s, "release line")
            check(re.search(r"failure rate \d+\.\d%", s), "failure rate")
            check("\x1b" not in s, "raw escape codes on screen")
            first = device_line(s, up)
            check(first and "uploading" in first and "3 KiB" in first, f"device line {first}")

            # The fleet persists a new offset: the view redraws it and measures a rate.
            update(d.db, "UPDATE jobs SET offset = 102400 WHERE address = ?", up)
            s = tmux.wait_for(lambda s: "100 KiB" in (device_line(s, up) or ""), "new offset")
            line = device_line(s, up)
            m = re.search(r"(\d+\.\d) KiB/s", line)
            check(m and float(m.group(1)) > 0, f"no measured rate in '{line}'")
            update(d.db, "UPDATE jobs SET offset = 204800 WHERE address = ?", up)
            tmux.wait_for(lambda s: "200 KiB" in (device_line(s, up) or ""), "second offset")

            # A device fails: it leaves the active list, its reason shows under failures.
            # Its reason came from the device: a terminal escape in it is shown escaped.
            update(d.db, "UPDATE jobs SET state = 'failed', reason = 'watch test reason"
                         "\x1b[2J', finished_at = 9999999999999 WHERE address = ?", up)
            s = tmux.wait_for(lambda s: "watch test reason" in s, "the new failure")
            check("watch test reason\\x1b[2J" in s, "escape in a reason not shown escaped")
            check("Active devices: 30" in s, "active count after the failure")
            check(re.search(re.escape(up) + r"\s+failed\s+watch test reason", s),
                  "failure line with address and reason")
            check(device_line(s, up) is None or "uploading" not in device_line(s, up),
                  "failed device still shown as uploading")

            # Halting shows at once.
            update(d.db, "UPDATE rollout SET halted = 1 WHERE release_id = 'r2'")
            tmux.wait_for(lambda s: "HALTED" in s, "HALTED")

            # The gateway goes away and comes back: the view says so, then recovers.
            d.stop()
            tmux.wait_for(lambda s: "gateway unreachable" in s, "the outage")
            d.start()
            tmux.wait_for(lambda s: "Active devices: 30" in s, "recovery")

            # The gateway stops answering (stopped, its socket still accepts): once a
            # request waits for an answer, q must still quit at once, not after the
            # request's 15 s timeout.
            d.proc.send_signal(signal.SIGSTOP)
            wait_unanswered_request(d.port)
            tmux.run("send-keys", "-t", "w", "q")
            deadline = time.monotonic() + 5
            while not os.path.exists(status) and time.monotonic() < deadline:
                time.sleep(0.05)
            check(os.path.exists(status), "q did not quit")
            with open(status) as f:
                rc = f.read().strip()
            check(rc == "0", f"exit status {rc}")
            s = tmux.screen()
            check("Active devices" not in s, "alternate screen not left")
        except Fail as e:
            print("FAIL:", e)
            return 1
        finally:
            tmux.kill()
            if d.proc and d.proc.poll() is None:
                d.proc.send_signal(signal.SIGCONT)
            d.kill()
        print("ok: watch redrew offsets, rate, failures, halt and outage; q quit cleanly")
        return 0


if __name__ == "__main__":
    sys.exit(main())

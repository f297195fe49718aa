#!/usr/bin/env python3
"""fotagwd prunes its database by itself (issue 18 item 6): old events and the oldest beyond
[store] retain_events_max go, a BLE device not seen for forget_devices_after_days goes unless
a job of it is unfinished, in bounded batches while the daemon runs; integrity_check passes.

  test_retention.py FOTAGWD
"""
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

FOTAGWD = sys.argv[1]
DAY_MS = 86400 * 1000


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def run_daemon(conf, log):
    return subprocess.Popen([FOTAGWD, "--config", conf], stderr=log,
                            env=dict(os.environ, NOTIFY_SOCKET=""))


def stop(p):
    p.send_signal(signal.SIGTERM)
    if p.wait(timeout=10) != 0:
        fail(f"fotagwd exited {p.returncode}")


def counts(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        ev = con.execute("SELECT count(*), min(at) FROM events").fetchone()
        devs = [r[0] for r in con.execute("SELECT address FROM devices ORDER BY address")]
        return ev, devs
    finally:
        con.close()


def main():
    with tempfile.TemporaryDirectory(prefix="fgw-retention-") as tmp:
        conf = os.path.join(tmp, "fotagw.conf")
        db = os.path.join(tmp, "fotagw.db")
        with open(conf, "w") as f:
            f.write(f"[log]\nlevel = info\n[store]\npath = {db}\nretain_events_days = 30\n"
                    "retain_events_max = 700\nforget_devices_after_days = 100\n"
                    "[api]\nenabled = false\n[ble]\nenabled = false\n")
        log = open(os.path.join(tmp, "stderr"), "w+")
        # A first run creates the schema; then an old registry is written into it.
        p = run_daemon(conf, log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            log.seek(0)
            if "event: started" in log.read():
                break
            time.sleep(0.05)
        stop(p)
        now = int(time.time() * 1000)
        con = sqlite3.connect(db)
        con.execute("INSERT INTO releases (id, sequence, version, bundle_url, bundle_sha256, "
                    "bundle_size, state, created_at) VALUES ('r1', 1, '1.0.0', 'b', 'aa', 1, "
                    "'verified', 1)")
        old = now - 200 * DAY_MS
        for a in ("C0:00:00:00:00:01", "C0:00:00:00:00:02", "C0:00:00:00:00:03"):
            con.execute("INSERT INTO devices (address, transport, last_seen, created_at) "
                        "VALUES (?, 'ble', ?, 1)", (a, old if a != "C0:00:00:00:00:03" else now))
        # :02 is mid-upload: never forgotten, however long unseen.
        con.execute("INSERT INTO jobs (address, release_id, state, created_at, updated_at) "
                    "VALUES ('C0:00:00:00:00:02', 'r1', 'uploading', 1, 1)")
        # 1,000 events 40 days old, then 1,000 recent: 1,000 go by age, 300 more by count.
        con.executemany("INSERT INTO events (at, kind) VALUES (?, 'test')",
                        [(now - 40 * DAY_MS + i,) for i in range(1000)] +
                        [(now - 1000 + i,) for i in range(1000)])
        con.commit()
        con.close()

        p = run_daemon(conf, log)
        try:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                (n, first), devs = counts(db)
                if n == 700 and len(devs) == 2:
                    break
                if p.poll() is not None:
                    fail(f"fotagwd exited {p.returncode}")
                time.sleep(0.2)
            else:
                fail(f"not pruned: {counts(db)}")
            if first != now - 1000 + 300:
                fail(f"the newest 700 events should stay, oldest left at {first}")
            if devs != ["C0:00:00:00:00:02", "C0:00:00:00:00:03"]:
                fail(f"devices kept: {devs}")
        finally:
            stop(p)
        con = sqlite3.connect(db)
        if con.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            fail("integrity_check")
        con.close()
        log.seek(0)
        text = log.read()
        # Batches of at most 500 rows of a kind: 1,300 events take three passes or more.
        batches = [l for l in text.splitlines() if "event: pruned" in l]
        if len(batches) < 3:
            fail(f"pruned in {len(batches)} passes, want >= 3 (batches of 500):\n{text}")
        print(f"retention ok: {len(batches)} passes")


main()

#!/usr/bin/env python3
"""fotagw-smp (lib/smp + lib/upload + the UDP transport) against fotagw-sim over SMP/UDP.

Each case starts its own simulator (temp state dir, free loopback ports) and stops it.
Images come from tests/tools/mkimage.py, an independent MCUboot writer that prints the image
hash (SHA256 TLV). Checks: the device lists the uploaded image in slot 1 with exactly that hash,
the device's image check ("match", over the file's SHA-256 we send as `sha`) passes, and
uploads survive lost answers, a device out of reach, a client killed mid-way (the next run
resumes from the device's offset), and a device reboot.

  test_smp_it.py --sim PATH --smp PATH --mkimage PATH [-k NAME]
"""
import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sim"))
import simctl  # noqa: E402

A = None
TMP = None
# A quick but realistic link: the "fast" BLE profile, little flash time so tests stay short.
QUICK = "fast,erase=2,write=0.5,boot=50"


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def mkimage(name, size, seed, version="1.1.0"):
    path = os.path.join(TMP, name)
    out = subprocess.run([sys.executable, A.mkimage, "-o", path, "--size", str(size),
                          "--seed", str(seed), "--version", version],
                         capture_output=True, text=True, check=True)
    return path, out.stdout.strip()


def smp(sim, *args, dev=0, timeout=120, check_rc=True, json_out=True):
    cmd = [A.smp, "--transport", "udp:127.0.0.1:%d" % sim.port(dev), "--timeout", "2000"]
    if json_out:
        cmd.append("--json")
    cmd += list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check_rc and p.returncode != 0:
        raise Fail("%s: exit %d\nstdout: %s\nstderr: %s" % (" ".join(args), p.returncode,
                                                           p.stdout, p.stderr[-2000:]))
    if not json_out:
        return p
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        raise Fail("%s: not JSON: %r (stderr %s)" % (" ".join(args), p.stdout, p.stderr))


def slot(state, image, slot_no):
    for s in state["images"]:
        if s["image"] == image and s["slot"] == slot_no:
            return s
    return None


def upload_and_verify(sim, path, image_hash, extra=()):
    rc, up = smp(sim, "image", "upload", path, *extra)
    check(up["bytes"] == os.path.getsize(path), "upload reports %s bytes" % up["bytes"])
    _, st = smp(sim, "image", "list")
    s1 = slot(st, 0, 1)
    check(s1 is not None, "no image 0 slot 1 after upload: %s" % st)
    check(s1["hash"] == image_hash, "slot 1 hash %s, image hash %s" % (s1["hash"], image_hash))
    # the hash in image state is the MCUboot TLV, not the file's SHA-256 (which is `sha`)
    file_sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    check(s1["hash"] != file_sha, "image state shows the file SHA-256, not the TLV")
    check(up.get("match") is True, "device image check over the file SHA-256: %s" % up)
    return up


# ---- cases ----

def case_cli_basics():
    with simctl.Sim(A.sim, args=["--link", QUICK]) as sim:
        _, r = smp(sim, "echo", "hello there")
        check(r == {"r": "hello there"}, "echo: %s" % r)
        p = smp(sim, "echo", "plain", json_out=False)
        check(p.stdout == "plain\n", "echo text: %r" % p.stdout)
        _, r = smp(sim, "params")
        check(r["buf_size"] == 2475 and r["buf_count"] == 2, "params (UDP default): %s" % r)
        _, r = smp(sim, "info")
        check(r.get("bootloader") == "MCUboot" and r.get("mode") == 2, "info: %s" % r)
        _, r = smp(sim, "image", "list")
        s0 = slot(r, 0, 0)
        check(s0 and s0["active"] and s0["confirmed"], "image list: %s" % r)
        _, r = smp(sim, "image", "slots")
        check(len(r["images"]) == 2, "slots: %s" % r)
        # bad transports fail clearly, without touching the network
        for spec, word in (("tcp:1.2.3.4", "unknown transport"), ("udp:", "bad"),
                           ("udp:host.example:1", "bad udp address"), ("nocolon", "bad")):
            p = subprocess.run([A.smp, "--transport", spec, "echo", "x"], capture_output=True,
                               text=True, timeout=10)
            check(p.returncode == 2 and word in p.stderr, "%s: %d %r" % (spec, p.returncode,
                                                                         p.stderr))
        # nobody listening: a timeout, exit 1, JSON error
        p = subprocess.run([A.smp, "--transport", "udp:127.0.0.1:%d" % simctl.free_udp_base(1),
                            "--timeout", "300", "--json", "echo", "x"],
                           capture_output=True, text=True, timeout=10)
        check(p.returncode == 1 and "error" in json.loads(p.stdout), "silent peer: %r" % p.stdout)


def case_upload_sizes():
    # 1 MiB does not fit the default nRF5340 app slot (960 KiB): give the device a bigger one
    with simctl.Sim(A.sim, args=["--link", QUICK, "--set", "app_slot_size=1310720"]) as sim:
        for i, size in enumerate((1024, 300 * 1024, 1024 * 1024)):
            path, h = mkimage("size-%d.bin" % size, size, seed=100 + i)
            up = upload_and_verify(sim, path, h)
            check(up["retransmissions"] == 0 and up["restarts"] == 0, "clean link: %s" % up)
            check(up["window"] == 1, "window from buf_count 2 (UDP): %s" % up)
            print("  %7d bytes: %.1f KiB/s streaming, %d chunks" %
                  (up["bytes"], up["stream_kib_per_s"], up["chunks"]))


def case_lost_answers():
    args = ["--link", QUICK, "--set", "drop_notify_prob=0.05", "--seed", "3"]
    with simctl.Sim(A.sim, args=args) as sim:
        path, h = mkimage("loss.bin", 200 * 1024, seed=7)
        up = upload_and_verify(sim, path, h)
        check(up["lost"] + up["timeouts"] > 0, "5%% answers lost but none noticed: %s" % up)
        check(up["restarts"] == 0, "lost answers must not restart: %s" % up)
        check(up["bytes_sent"] < 1.2 * up["bytes"], "too much resent: %s" % up)
        print("  lost %d, timeouts %d, retransmissions %d" %
              (up["lost"], up["timeouts"], up["retransmissions"]))


def case_lost_final_chunk_and_window():
    """Issue 22: the chunk completing the upload is lost with nothing after it; it is sent again
    after about two round trips, not after the 20 s last-chunk timeout (no timeout counted).
    Issue 21: --window above buf_count - 1 is clamped with a notice; a refused port fails at
    once, naming it."""
    with simctl.Sim(A.sim, args=["--link", QUICK, "--set", "lose_final_chunk=true"]) as sim:
        path, h = mkimage("final.bin", 60 * 1024, seed=77)
        up = upload_and_verify(sim, path, h)
        check(up["timeouts"] == 0 and up["retransmissions"] == 1, "recovered early: %s" % up)
    with simctl.Sim(A.sim, args=["--link", QUICK]) as sim:
        path, h = mkimage("clamp.bin", 20 * 1024, seed=78)
        p = smp(sim, "image", "upload", path, "--window", "4", json_out=False)
        check("--window 4 clamped to 1" in p.stderr, "clamp notice: %r" % p.stderr)
    port = simctl.free_udp_base(1)
    t0 = time.monotonic()
    p = subprocess.run([A.smp, "--transport", "udp:127.0.0.1:%d" % port, "--timeout", "30000",
                        "echo", "x"], capture_output=True, text=True, timeout=60)
    check(p.returncode == 1 and "connection refused (nothing listens on 127.0.0.1:%d)" % port
          in p.stderr, "refused: %r" % p.stderr)
    check(time.monotonic() - t0 < 20, "refused at once, not after the 30 s timeout")


def case_out_of_range_resumes():
    # the device stops answering for 3 s at chunk 40 and keeps its session (RAM)
    args = ["--link", QUICK, "--fault", "0:out_of_range_at_chunk=40,out_of_range_ms=3000"]
    with simctl.Sim(A.sim, args=args) as sim:
        path, h = mkimage("away.bin", 300 * 1024, seed=8)
        up = upload_and_verify(sim, path, h)
        check(up["timeouts"] > 0, "no timeout seen: %s" % up)
        check(up["restarts"] == 0, "resumed, not restarted: %s" % up)
        check(up["bytes_sent"] < 1.1 * up["bytes"], "resent too much: %s" % up)


def case_killed_client_resumes():
    # a client killed mid-way; the next run's first chunk (same sha) resumes the session
    with simctl.Sim(A.sim, args=["--link", "fast,erase=0,write=2,boot=50"]) as sim:
        path, h = mkimage("kill.bin", 600 * 1024, seed=9)
        p = subprocess.Popen([A.smp, "--transport", "udp:127.0.0.1:%d" % sim.port(0), "--json",
                              "image", "upload", path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        time.sleep(1.5)
        p.send_signal(signal.SIGKILL)
        p.wait()
        up = upload_and_verify(sim, path, h)
        check(0 < up["start_off"] < up["bytes"], "did not resume: %s" % up)
        check(up["bytes_sent"] <= up["bytes"] - up["start_off"] + 2 * up["chunk_size"],
              "resent more than the rest: %s" % up)
        print("  resumed at %d of %d" % (up["start_off"], up["bytes"]))


def case_reboot_mid_upload():
    # Zephyr keeps the upload session in RAM: after a reboot the device answers off 0 and the
    # engine starts over by itself (same command, no caller action)
    args = ["--link", QUICK, "--fault", "0:reboot_at_chunk=30"]
    with simctl.Sim(A.sim, args=args) as sim:
        path, h = mkimage("reboot.bin", 200 * 1024, seed=10)
        up = upload_and_verify(sim, path, h)
        check(up["timeouts"] > 0 or up["restarts"] > 0, "reboot not noticed: %s" % up)
        print("  restarts %d, timeouts %d, bytes sent %d" %
              (up["restarts"], up["timeouts"], up["bytes_sent"]))


def case_device_errors_and_marking():
    with simctl.Sim(A.sim, args=["--link", QUICK]) as sim:
        path, h = mkimage("mark.bin", 50 * 1024, seed=11)
        upload_and_verify(sim, path, h)
        rc, r = smp(sim, "image", "confirm", h)
        s1 = slot(r, 0, 1)
        check(s1["pending"] and s1["permanent"], "confirm: %s" % r)
        # slot 1 is pending now: a new upload is refused (NO_FREE_SLOT), exit 1, JSON error
        path2, _ = mkimage("mark2.bin", 50 * 1024, seed=12)
        rc, r = smp(sim, "image", "upload", path2, check_rc=False)
        check(rc == 1 and r.get("name") == "NO_FREE_SLOT" and r.get("group") == 1,
              "upload to a pending slot: %s" % r)
        rc, r = smp(sim, "image", "test", "00" * 32, check_rc=False)
        check(rc == 1 and "error" in r, "test of an unknown hash: %s" % r)
        p = smp(sim, "image", "test", "zz", check_rc=False, json_out=False)
        check(p.returncode == 2, "bad hash argument accepted")
        # reset: the device answers, reboots 250 ms later into the new image (overwrite-only)
        smp(sim, "reset")
        deadline = time.time() + 20
        while True:
            p = smp(sim, "--json", "--timeout", "500", "--retries", "0", "image", "list",
                    check_rc=False, json_out=False)
            if p.returncode == 0:
                s0 = slot(json.loads(p.stdout), 0, 0)
                if s0["hash"] == h:
                    break
            check(time.time() < deadline, "device did not boot the new image: %s %s" %
                  (p.stdout, p.stderr))
            time.sleep(0.2)
        check(s0["active"] and s0["confirmed"], "after reset: %s" % s0)


CASES = [case_cli_basics, case_upload_sizes, case_lost_answers, case_lost_final_chunk_and_window,
         case_out_of_range_resumes,
         case_killed_client_resumes, case_reboot_mid_upload, case_device_errors_and_marking]


def main():
    global A, TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", required=True)
    ap.add_argument("--smp", required=True)
    ap.add_argument("--mkimage", required=True)
    ap.add_argument("-k", help="run only cases whose name contains this")
    A = ap.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="fotagw-smp-it-") as TMP:
        for c in CASES:
            if A.k and A.k not in c.__name__:
                continue
            t = time.time()
            try:
                c()
                print("ok   %s (%.1f s)" % (c.__name__, time.time() - t), flush=True)
            except (Fail, subprocess.SubprocessError, RuntimeError) as e:
                failed += 1
                print("FAIL %s: %s" % (c.__name__, e), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

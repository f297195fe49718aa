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


def mkimage(name, size, seed, version="1.1.0", extra=()):
    path = os.path.join(TMP, name)
    out = subprocess.run([sys.executable, A.mkimage, "-o", path, "--size", str(size),
                          "--seed", str(seed), "--version", version] + list(extra),
                         capture_output=True, text=True, check=True)
    return path, out.stdout.strip()


def keygen(name):
    path = os.path.join(TMP, name)
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", path], check=True,
                   capture_output=True)
    return path


def run(*args, env=None, timeout=60):
    """fotagw-smp with exactly these arguments: (exit code, stdout, stderr)."""
    p = subprocess.run([A.smp] + list(args), capture_output=True, text=True, timeout=timeout,
                       env=env)
    return p.returncode, p.stdout, p.stderr


def one_json(out):
    """--json promises exactly one JSON object on stdout, whatever happened."""
    lines = out.strip().split("\n")
    check(len(lines) == 1, "not one JSON line: %r" % out)
    o = json.loads(lines[0])
    check(isinstance(o, dict) and isinstance(o.get("ok"), bool), "no ok field: %r" % out)
    return o


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
    check(up["ok"] is True and up["placement"]["confirmed"] is True, "placement: %s" % up)
    return up


# ---- cases ----

def case_cli_basics():
    with simctl.Sim(A.sim, args=["--link", QUICK]) as sim:
        _, r = smp(sim, "echo", "hello there")
        check(r == {"ok": True, "r": "hello there"}, "echo: %s" % r)
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


def wait_quarter(sim, timeout=60):
    """Until the device holds a quarter of the upload (the simulator logs it once): mid-upload,
    whatever the host's speed."""
    deadline = time.monotonic() + timeout
    while "event: upload-quarter" not in sim.log():
        check(time.monotonic() < deadline, "no quarter of the upload within %d s" % timeout)
        time.sleep(0.05)  # a poll step of the bounded wait


def case_killed_client_resumes():
    # a client killed mid-way; the next run's first chunk (same sha) resumes the session
    with simctl.Sim(A.sim, args=["--link", "fast,erase=0,write=2,boot=50"]) as sim:
        path, h = mkimage("kill.bin", 600 * 1024, seed=9)
        p = subprocess.Popen([A.smp, "--transport", "udp:127.0.0.1:%d" % sim.port(0), "--json",
                              "image", "upload", path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        wait_quarter(sim)
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


# ---- issue #21 items 4-10: what a field engineer reads ----

def udp(sim, dev=0):
    return ["--transport", "udp:127.0.0.1:%d" % sim.port(dev)]


def case_reset_outcomes():
    # item 4: device 1 reboots before its answer goes out (reset_no_answer)
    with simctl.Sim(A.sim, devices=2, args=["--link", QUICK,
                                            "--fault", "1:reset_no_answer=true"]) as sim:
        rc, out, err = run(*udp(sim, 0), "--json", "reset")
        r = one_json(out)
        check(rc == 0 and r["ok"] and r["how"] == "answered", "answered reset: %s" % out)
        rc, out, err = run(*udp(sim, 1), "--timeout", "500", "reset")
        check(rc == 1 and "no answer to reset: the device may not have reset" in err and
              "127.0.0.1:%d" % sim.port(1) in err, "silent reset: %d %r" % (rc, err))
        rc, out, err = run(*udp(sim, 1), "--timeout", "500", "--json", "reset")
        r = one_json(out)
        check(rc == 1 and r["ok"] is False and r["error"] == "no answer to reset",
              "silent reset, JSON: %r" % out)
        check("event: reset, device: fotagw-sim-0001" in sim.log(), "device 1 did not reset")


def case_summary_resume_restart():
    # item 5: the text line says resumed-at and restarted; item 6: no "nothing sent"
    with simctl.Sim(A.sim, args=["--link", "fast,erase=0,write=2,boot=50"]) as sim:
        path, h = mkimage("sum.bin", 400 * 1024, seed=21)
        p = subprocess.Popen([A.smp] + udp(sim) + ["image", "upload", path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_quarter(sim)
        p.send_signal(signal.SIGKILL)
        p.wait()
        rc, out, err = run(*udp(sim), "image", "upload", path, timeout=120)
        size = "{:,}".format(os.path.getsize(path))
        check(rc == 0 and re_search(r"^resumed at [\d,]+ of %s: " % size, out),
              "resume summary: %r %r" % (out, err))
        rc, out, err = run(*udp(sim), "image", "upload", path, timeout=60)
        check(rc == 0 and "the device already held this image" in out and
              "nothing sent" not in out and "1 chunk," in out, "same image again: %r" % out)
        rc, out, _ = run(*udp(sim), "--json", "image", "upload", path)
        r = one_json(out)
        check(r["already_held"] and r["chunks"] >= 1 and r["start_off"] == r["bytes"],
              "already held, JSON: %s" % r)
    with simctl.Sim(A.sim, args=["--link", QUICK, "--fault", "0:reboot_at_chunk=30"]) as sim:
        path, h = mkimage("sum2.bin", 200 * 1024, seed=22)
        rc, out, err = run(*udp(sim), "--timeout", "2000", "image", "upload", path, timeout=120)
        check(rc == 0 and "the device restarted the upload: sent again from 0" in out,
              "restart summary: %r %r" % (out, err))


def re_search(pattern, text):
    import re
    return re.search(pattern, text, re.M) is not None


def case_json_outcomes():
    # item 7: every outcome one JSON object with "ok"; group errors without "rc"
    rc, out, _ = run("--json", "image", "upload", os.path.join(TMP, "missing.bin"))
    r = one_json(out)
    check(rc == 1 and r["ok"] is False and r["errno"] == 2, "missing file: %r" % out)
    rc, out, _ = run("--json", "--timeout", "x", "echo", "a")
    r = one_json(out)
    check(rc == 2 and r["ok"] is False and "--timeout" in r["message"], "usage: %r" % out)
    rc, out, _ = run("--json", "--version")
    check(rc == 0 and one_json(out)["ok"] is True, "version: %r" % out)
    with simctl.Sim(A.sim, args=["--link", QUICK]) as sim:
        path, h = mkimage("j1.bin", 20 * 1024, seed=31)
        upload_and_verify(sim, path, h)
        smp(sim, "image", "confirm", h)
        path2, _ = mkimage("j2.bin", 20 * 1024, seed=32)
        rc, r = smp(sim, "image", "upload", path2, check_rc=False)
        check(rc == 1 and r["ok"] is False and r["group_rc"] == 9 and "rc" not in r,
              "group error: %s" % r)
        rc, out, _ = run("--json", "--transport", "udp:127.0.0.1:%d" % simctl.free_udp_base(1),
                         "--timeout", "300", "--retries", "0", "echo", "x")
        r = one_json(out)
        check(rc == 1 and r["ok"] is False and "127.0.0.1" in r["message"],
              "timeout names the address: %r" % out)


def case_local_checks():
    # item 8: refuse before the first byte, with the reason; --force; rc 1 explained
    key_a, key_b = keygen("a.pem"), keygen("b.pem")
    bad_hash, _ = mkimage("badhash.bin", 20 * 1024, seed=41, extra=["--corrupt", "hash"])
    signed, h = mkimage("signed.bin", 20 * 1024, seed=42,
                        extra=["--key", key_a, "--key-type", "ed25519"])
    junk = os.path.join(TMP, "junk.bin")
    with open(junk, "wb") as f:
        f.write(os.urandom(8192))
    big, _ = mkimage("big.bin", 100 * 1024, seed=43)
    args = ["--link", QUICK, "--set", "app_slot_size=65536"]
    with simctl.Sim(A.sim, args=args) as sim:
        for path, word in ((bad_hash, "hash-mismatch"), (junk, "not an MCUboot image"),
                           (big, "do not fit image 0's slot")):
            rc, out, err = run(*udp(sim), "image", "upload", path)
            check(rc == 1 and word in err and "nothing sent" in err,
                  "%s: %d %r" % (path, rc, err))
        rc, out, err = run(*udp(sim), "--json", "image", "upload", signed, "--key", key_b)
        r = one_json(out)
        check(rc == 1 and "bad-image-signature" in r["message"], "other key: %s" % r)
        _, st = smp(sim, "image", "list")
        check(slot(st, 0, 1) is None, "something reached slot 1: %s" % st)
        rc, r = smp(sim, "image", "upload", signed, "--key", key_a)
        check(r["file"]["signature"] == "valid" and r["placement"]["confirmed"], "%s" % r)
        # v1 answers rc 1 for a non-image: the tool adds what it found locally
        smp(sim, "image", "erase")
        rc, out, err = run(*udp(sim), "--v1", "--force", "image", "upload", junk)
        check(rc == 1 and "EUNKNOWN" in err and
              "likely causes found locally: not an MCUboot image" in err,
              "rc 1 explained: %d %r" % (rc, err))


def case_image_placement():
    # item 9: a single-image device ignores --image 1; the tool notices before and after
    with simctl.Sim(A.sim, args=["--link", QUICK, "--set", "single_image=true"]) as sim:
        path, h = mkimage("net.bin", 20 * 1024, seed=51)
        rc, r = smp(sim, "image", "upload", path, "--image", "1", check_rc=False)
        check(rc == 1 and "no image 1" in r["message"], "pre-check: %s" % r)
        rc, r = smp(sim, "image", "upload", path, "--image", "1", "--force", check_rc=False)
        check(rc == 1 and r["error"] == "image misplaced" and
              r["placement"]["confirmed"] is False and "image 0 slot 1" in r["message"],
              "post-check: %s" % r)
        _, st = smp(sim, "image", "list")
        check(slot(st, 0, 1)["hash"] == h and all(s["image"] == 0 for s in st["images"]),
              "where it landed: %s" % st)


def case_small_things():
    # item 10
    args = ["--link", QUICK, "--fault", "1:bootloader_info=false"]
    with simctl.Sim(A.sim, devices=2, args=args) as sim:
        rc, out, _ = run(*udp(sim, 1), "info")
        check(rc == 0 and "bootloader info: not supported" in out, "info: %r" % out)
        rc, out, _ = run(*udp(sim, 1), "--json", "info")
        check(one_json(out).get("bootloader_info") == "not supported", "info: %r" % out)
        path, h = mkimage("small.bin", 30 * 1024, seed=61)
        up = upload_and_verify(sim, path, h)
        for k in ("kib_per_s", "stream_kib_per_s"):
            check(round(up[k], 1) == up[k], "%s not rounded: %r" % (k, up[k]))
        rc, out, _ = run(*udp(sim), "image", "list")
        check("flags: none" in out and "flags:\n" not in out, "empty flags: %r" % out)
        # what the device sends back reaches the terminal escaped
        rc, out, _ = run(*udp(sim), "echo", "red\x1b[31m\x07")
        check(rc == 0 and out == "red\\x1b[31m\\x07\n", "escaped echo: %r" % out)
        rc, out, err = run(*udp(sim), "echo", "x" * 1500)
        check(rc == 1 and "at most 1458 bytes of text" in err and "1472-byte" in err,
              "long echo: %r" % err)


# ---- issue #19 item 3: CLI conventions ----

COMMANDS = [[], ["echo"], ["reset"], ["params"], ["info"], ["image"], ["image", "list"],
            ["image", "slots"], ["image", "upload"], ["image", "test"], ["image", "confirm"],
            ["image", "erase"], ["scan"]]


def case_cli_conventions():
    for c in COMMANDS:
        rc, out, err = run(*(c + ["--help"]))
        check(rc == 0 and out.startswith("usage: fotagw-smp") and not err,
              "%s --help: %d %r" % (c, rc, err))
        check(" ".join(c) in out.split("\n")[0], "%s --help: not its usage: %r" % (c, out))
        rc, out, err = run(*(["--version"] + c))
        check(rc == 0 and re_search(r"^fotagw-smp \d+\.\d+\.\d+$", out), "%s --version" % c)
    rc, out, _ = run("--help")
    check("Timeouts:" in out and "--retries" in out, "--help documents the timeouts")
    for args, word in ((["frob"], "unknown command 'frob'"),
                       (["image", "frob"], "unknown image subcommand 'frob'"),
                       (["--frob", "params"], "'--frob'"),
                       (["params", "--timeout", "0"], "--timeout: bad value '0'"),
                       (["params", "--window", "2"], "params does not take --window"),
                       (["echo", "a", "b"], "unexpected argument 'b'"),
                       (["image", "test", "zz"], "'zz' is not a 64-digit hex hash")):
        rc, out, err = run(*args)
        check(rc == 2 and word in err, "%s: %d %r" % (args, rc, err))
    with simctl.Sim(A.sim, args=["--link", QUICK]) as sim:
        # options after the subcommand work as before it
        rc, out, _ = run("image", "list", "--json", *udp(sim))
        check(rc == 0 and one_json(out)["ok"], "options after: %r" % out)


def case_scan_by_name():
    # the simulator's default devices do not advertise the SMP UUID, as NCS firmware
    with simctl.Bus() as bus, simctl.Sim(A.sim, devices=2, udp=False, bluez=True,
                                         bus=bus, args=["--link", QUICK]) as sim:
        rc, out, err = run("--json", "scan", "--seconds", "2", env=bus.env)
        check(rc == 0 and one_json(out)["devices"] == [], "SMP filter: %r %r" % (out, err))
        rc, out, err = run("--json", "scan", "--seconds", "2", "--name", "fotagw-sim",
                           env=bus.env)
        devs = one_json(out)["devices"]
        check(rc == 0 and sorted(d["addr"] for d in devs) == [sim.address(0), sim.address(1)],
              "scan --name: %r %r" % (out, err))
        check(all(d["smp"] is False and d["name"].startswith("fotagw-sim") for d in devs),
              "smp column: %s" % devs)
        rc, out, err = run("scan", "--seconds", "2", "--all", env=bus.env)
        check(rc == 0 and out.count(" -  ") == 2, "scan --all: %r" % out)


def case_reset_ble_link_drop():
    # item 4 on BLE: the link dropping right after the request counts as the reset
    args = ["--link", QUICK, "--fault", "0:reset_no_answer=true"]
    with simctl.Bus() as bus, simctl.Sim(A.sim, devices=2, udp=False, bluez=True, bus=bus,
                                         args=args) as sim:
        for dev, how in ((0, "link-dropped"), (1, "answered")):
            rc, out, err = run("--transport", "ble:" + sim.address(dev), "--rssi", "0",
                               "--timeout", "5000", "--json", "reset", env=bus.env)
            r = one_json(out)
            check(rc == 0 and r["how"] == how, "ble reset %d: %r %r" % (dev, out, err))


GROUPS = {
    "upload": [case_cli_basics, case_upload_sizes, case_lost_answers,
               case_lost_final_chunk_and_window, case_out_of_range_resumes,
               case_killed_client_resumes, case_reboot_mid_upload,
               case_device_errors_and_marking],
    "field": [case_reset_outcomes, case_summary_resume_restart, case_json_outcomes,
              case_local_checks, case_image_placement, case_small_things],
    "cli": [case_cli_conventions, case_scan_by_name, case_reset_ble_link_drop],
}


def main():
    global A, TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", required=True)
    ap.add_argument("--smp", required=True)
    ap.add_argument("--mkimage", required=True)
    ap.add_argument("-k", help="run only cases whose name contains this")
    ap.add_argument("--group", choices=sorted(GROUPS), help="run only this group of cases")
    A = ap.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="fotagw-smp-it-") as TMP:
        for c in [c for g in sorted(GROUPS) if A.group in (None, g) for c in GROUPS[g]]:
            if A.k and A.k not in c.__name__:
                continue
            t = time.time()
            try:
                c()
                print("ok   %s (%.1f s)" % (c.__name__, time.time() - t), flush=True)
            except Exception as e:  # a KeyError in a check is a failure too, not a crash
                failed += 1
                print("FAIL %s: %s" % (c.__name__, e), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Faults from the command line and from scenario files: disconnects, dropped and delayed
responses, SMP error replies, reboot mid-upload, images failing at boot, a tested image that
never confirms, an unreadable net core slot, out of range. Plus the scenario file format."""
import subprocess
import time

import simtest
from simtest import QUICK, check, eq, reset_and_wait, resets, slot_view, wait_for, wait_up
import smpc
from smpc import OP_READ, OP_WRITE


def chunk(c, img, off, n=500, first=False):
    p = {"off": off, "data": img[off:off + n]}
    if first:
        p.update({"len": len(img), "sha": smpc.hashlib.sha256(img).digest()})
    return c.request(OP_WRITE, 1, 1, p, timeout=1.5)["body"]


def t_disconnect_at_chunk(ctx):
    img = ctx.mkimage("2.0.0", 5000, seed=41)
    with ctx.start(1, QUICK + ["--fault", "0:disconnect_at_chunk=2"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        eq(chunk(c, img, 0, first=True), {"off": 500})
        eq(chunk(c, img, 500), {"off": 1000})
        try:
            chunk(c, img, 1000)
            check(False, "chunk 2 answered")
        except smpc.SmpTimeout:
            pass
        check("fault: disconnect" in sim.log())
        check(wait_up(c), "the link is back")  # over UDP a lost link is a silent second
        # the session lives in the device's RAM: chunk 0 again resumes
        eq(chunk(c, img, 0, first=True), {"off": 1000}, "resume after the drop")
        eq(chunk(c, img, 1000), {"off": 1500}, "fault fires once")
        c.close()


def t_errors(ctx):
    img = ctx.mkimage("2.0.0", 5000, seed=42)
    with ctx.start(2, QUICK + ["--fault", "0:error=busy,error_at_chunk=1",
                               "--fault", "1:error=nomem,error_prob=1"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        eq(chunk(c, img, 0, first=True), {"off": 500})
        eq(chunk(c, img, 500), {"rc": 10}, "busy")
        eq(chunk(c, img, 500), {"off": 1000}, "retry succeeds")
        c.close()
        c = smpc.UdpClient(sim.port(1))
        eq(chunk(c, img, 0, first=True), {"rc": 2}, "no memory")
        eq(c.echo("still"), {"r": "still"}, "only uploads fail")
        c.close()


def t_drop_and_delay(ctx):
    with ctx.start(2, QUICK + ["--fault", "0:drop_notify_prob=1",
                               "--fault", "1:rsp_delay_ms=400"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        try:
            c.echo("x", timeout=1)
            check(False, "answered")
        except smpc.SmpTimeout:
            pass
        c.close()
        c = smpc.UdpClient(sim.port(1))
        t0 = time.monotonic()
        eq(c.echo("late"), {"r": "late"})
        check(time.monotonic() - t0 >= 0.38, "delayed")
        c.close()


def t_reboot_mid_upload(ctx):
    img = ctx.mkimage("2.0.0", 5000, seed=43)
    with ctx.start(1, QUICK + ["--fault", "0:reboot_at_chunk=2"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        eq(chunk(c, img, 0, first=True), {"off": 500})
        eq(chunk(c, img, 500), {"off": 1000})
        try:
            chunk(c, img, 1000)
        except smpc.SmpTimeout:
            pass
        check(wait_for(lambda: resets(sim) > 0), "rebooted at chunk 2")
        check(wait_up(c))
        # RAM session gone: any offset is answered with 0, the upload restarts
        eq(chunk(c, img, 1000), {"off": 0}, "session lost in the reboot")
        r = c.upload(img)
        eq(r, {"off": len(img), "match": True})
        check("event: reset" in sim.log())
        c.close()


def t_bad_boot(ctx):
    img = ctx.mkimage("2.0.0", 5000, seed=44)
    with ctx.start(1, QUICK + ["--fault", "0:bad_boot=true"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        c.upload(img)
        c.state_write(smpc.image_hash(img), True)
        reset_and_wait(c, sim)
        eq(slot_view(c), {(0, 0): {"v1.0.0", "active", "confirmed"}}, "not booted, erased")
        check("fault: bad_boot" in sim.log())
        c.close()


def t_no_confirm_reverts(ctx):
    img = ctx.mkimage("2.0.0", 5000, seed=45)
    with ctx.start(1, QUICK + ["--mode", "swap", "--fault",
                               "0:no_confirm=true,watchdog_ms=700"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        c.upload(img)
        c.state_write(smpc.image_hash(img), False)
        n = resets(sim)
        c.reset()
        check(wait_for(lambda: resets(sim) > n), "reset")
        try:
            c.echo("x", timeout=0.3)
            check(False, "the tested image answered")
        except smpc.SmpTimeout:
            pass
        check(wait_up(c, timeout=10), "back after the watchdog")
        eq(slot_view(c), {(0, 0): {"v1.0.0", "active", "confirmed"}, (0, 1): {"v2.0.0"}},
           "reverted because nobody confirmed")
        log = sim.log()
        check("event: hung" in log and "event: boot-revert" in log)
        c.close()


def t_net_unreadable(ctx):
    net = ctx.mkimage("2.0.0", 4000, seed=46)
    with ctx.start(1, QUICK + ["--fault", "0:net_unreadable=true"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        r = c.request(OP_WRITE, 1, 1, {"off": 0, "len": len(net), "data": net[:100],
                                       "image": 1})["body"]
        eq(r, {"err": {"group": 1, "rc": 10}}, "flash open failed")
        eq(len(c.state()["images"]), 1)
        log = sim.log()
        check("Failed to open flash area ID 2: -2" in log and "ID 3: -2" in log)
        c.close()


def t_out_of_range(ctx):
    with ctx.start(2, QUICK + ["--fault", "0:out_of_range=true",
                               "--fault", "1:out_of_range=true,out_of_range_ms=800"]) as sim:
        c0, c1 = smpc.UdpClient(sim.port(0)), smpc.UdpClient(sim.port(1))
        for c in (c0, c1):
            try:
                c.echo("x", timeout=0.3)
                check(False, "answered while out of range")
            except smpc.SmpTimeout:
                pass
        check(wait_up(c1, timeout=5), "back in range")
        try:
            c0.echo("x", timeout=0.5)
            check(False, "device 0 stays away")
        except smpc.SmpTimeout:
            pass
        c0.close()
        c1.close()


def t_disconnect_prob(ctx):
    with ctx.start(1, QUICK + ["--fault", "0:disconnect_prob=0.3", "--seed", "7"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        ok = lost = 0
        for _ in range(20):
            try:
                c.echo("p", timeout=0.3)
                ok += 1
            except smpc.SmpTimeout:
                lost += 1
                check(wait_up(c), "back after the drop")  # a dropped link is a silent second
        check(ok > 0 and lost > 0, "random drops: ok %d lost %d" % (ok, lost))
        c.close()


SCENARIO = """
; fotagw-sim scenario
[default]
mode = overwrite
link = fast,erase=0,write=0,boot=20

[device 1]
mode = swap
app_version = 1.4.2
net_version = 0.9.0+3

[device 2-3]
buf_size = 1024
buf_count = 2
error = busy
error_at_chunk = 0
"""


def t_scenario(ctx):
    path = ctx.path("scenario.ini")
    with open(path, "w") as f:
        f.write(SCENARIO)
    with ctx.start(4, ["--scenario", path]) as sim:
        cs = [smpc.UdpClient(sim.port(i)) for i in range(4)]
        eq(cs[0].request(OP_READ, 0, 8, {"query": "mode"})["body"], {"mode": 2})
        eq(cs[1].request(OP_READ, 0, 8, {"query": "mode"})["body"], {"mode": 3})
        eq(smpc.slots(cs[1].state())[(0, 0)]["version"], "1.4.2")
        eq(cs[1].request(OP_READ, 64, 0, {})["body"], {"app": "1.4.2", "net": "0.9.0.3"})
        eq(cs[2].params(), {"buf_size": 1024, "buf_count": 2})
        eq(cs[3].params(), {"buf_size": 1024, "buf_count": 2})
        eq(cs[0].params(), {"buf_size": 2475, "buf_count": 2})  # Zephyr's UDP default
        img = ctx.mkimage("2.0.0", 3000, seed=47)
        eq(chunk(cs[3], img, 0, first=True), {"rc": 10})
        for c in cs:
            c.close()
    # capacity follows the scenario too
    out = subprocess.run([ctx.sim, "--capacity", "--devices", "3", "--scenario", path],
                         capture_output=True, text=True, check=True).stdout
    caps = [d["buf_size"] for d in __import__("json").loads(out)]
    eq(caps, [2475, 2475, 1024])
    # errors: unknown key, bad value, bad section, each with its line number
    for text, line in (("[device 0]\nbogus = 1\n", 2), ("[default]\nmode = sideways\n", 2),
                       ("\n\n[devices 3]\nmode = swap\n", 4), ("[device 5-2]\nmode=swap\n", 2),
                       ("[default]\nrssi = -500\n", 2),
                       # names: over 29 bytes, not UTF-8, NUL, unknown escape
                       ("[device 0]\nname = " + "n" * 30 + "\n", 2),
                       ("[device 0]\nname = a\\xffb\n", 2), ("[device 0]\nname = \\x00\n", 2),
                       ("[device 0]\nname = a\\qb\n", 2)):
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([ctx.sim, "--state-dir", ctx.path("st"), "--scenario", path],
                           capture_output=True, text=True, timeout=10)
        eq(r.returncode, 2, text)
        check(":%d:" % line in r.stderr, "line number in %r" % r.stderr)
    r = subprocess.run([ctx.sim, "--state-dir", ctx.path("st"), "--scenario", ctx.path("none")],
                       capture_output=True, text=True, timeout=10)
    eq(r.returncode, 2, "missing scenario")


def t_rsn(ctx):
    """rsn: every error answer carries the scenario's text, control characters and bytes
    that are not UTF-8 included; success answers carry none."""
    import socket
    rsn = "x\\x0a<0>event: rollout-halted\\x1b[2J\\xff"
    want = b"x\n<0>event: rollout-halted\x1b[2J\xff"
    with ctx.start(2, ["--fault", "0:rsn=" + rsn]) as sim:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        try:
            s.sendto(smpc.smp_pack(OP_READ, 63, 0, {}), ("127.0.0.1", sim.port(0)))
            rsp = s.recvfrom(4096)[0]
            # {"rc": 8, "rsn": <text of len(want) bytes>} after the 8-byte header
            check(b"\x63rsn\x78" + bytes([len(want)]) + want in rsp, repr(rsp))
            check(b"rc" in rsp)
            s.sendto(smpc.smp_pack(OP_WRITE, 0, 0, {"d": "hi"}), ("127.0.0.1", sim.port(0)))
            check(b"rsn" not in s.recvfrom(4096)[0], "no rsn on success")
            s.sendto(smpc.smp_pack(OP_READ, 63, 0, {}), ("127.0.0.1", sim.port(1)))
            check(b"rsn" not in s.recvfrom(4096)[0], "device 1 has none")
        finally:
            s.close()
    r = subprocess.run([ctx.sim, "--state-dir", ctx.path("st"), "--set", "rsn=a\\x00"],
                       capture_output=True, text=True, timeout=10)
    eq(r.returncode, 2, "NUL refused")


if __name__ == "__main__":
    simtest.run([t_disconnect_at_chunk, t_errors, t_drop_and_delay, t_reboot_mid_upload,
                 t_bad_boot, t_no_confirm_reverts, t_net_unreadable, t_out_of_range,
                 t_disconnect_prob, t_scenario, t_rsn])

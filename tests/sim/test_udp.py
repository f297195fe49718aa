#!/usr/bin/env python3
"""fotagw-sim over SMP/UDP: os and img groups, errors v1/v2, uploads, MCUboot outcomes,
persistence, link model. Raw SMP, hand-encoded CBOR (smpc.py)."""
import hashlib
import json
import os
import struct
import subprocess
import time

import simtest
from simtest import QUICK, check, eq, reset_and_wait, slot_view, wait_up
import smpc
from smpc import OP_READ, OP_WRITE


def t_os_group(ctx):
    with ctx.start(2, QUICK) as sim:
        c = smpc.UdpClient(sim.port(1))
        eq(c.echo("hello"), {"r": "hello"}, "echo")
        # Zephyr's MCUMGR_TRANSPORT_NETBUF_COUNT defaults to 2 with the UDP transport
        eq(c.params(), {"buf_size": 2475, "buf_count": 2}, "params")
        eq(c.request(OP_READ, 0, 8, {})["body"], {"bootloader": "MCUboot"}, "bootloader")
        eq(c.request(OP_READ, 0, 8, {"query": "mode"})["body"], {"mode": 2}, "mode")
        r = c.request(OP_READ, 0, 8, {"query": "bogus"})["body"]
        eq(r, {"err": {"group": 0, "rc": 3}}, "unknown query v2")
        r = c.request(OP_READ, 0, 8, {"query": "bogus"}, ver=0)["body"]
        eq(r, {"rc": 5}, "unknown query v1")
        out = c.request(OP_READ, 0, 7, {"format": "sn"})["body"]["output"]
        eq(out, "Zephyr fotagw-sim-0001", "os info")
        eq(c.request(OP_READ, 0, 7, {"format": "q"})["body"], {"err": {"group": 0, "rc": 2}})
        eq(c.request(OP_READ, 0, 7, {})["body"], {"output": "Zephyr"}, "os info default")
        # unknown group / command, wrong op
        eq(c.request(OP_READ, 9, 0, {})["body"], {"rc": 8}, "unknown group")
        eq(c.request(OP_READ, 0, 42, {})["body"], {"rc": 8}, "unknown command")
        eq(c.request(OP_READ, 0, 5, {})["body"], {"rc": 8}, "reset is write-only")
        # responses use indefinite-length maps, header echoes version/group/seq/id
        seq = c.send(OP_READ, 0, 6, {}, ver=0)
        r = c.recv()
        eq((r["op"], r["ver"], r["seq"], r["id"]), (1, 0, seq, 6), "v1 header echo")
        check(smpc.cbor_is_indefinite_map(r["raw"]), "indefinite map")
        seq = c.send(OP_WRITE, 0, 0, {"d": "x"})
        r = c.recv()
        eq((r["op"], r["ver"]), (3, 1), "write rsp v2")
        # version 3 (reserved), bad CBOR, truncated payload, a response op sent to the server
        eq(c.request(OP_READ, 0, 6, {}, ver=2)["body"], {"rc": 13}, "too new")
        c.send_raw(smpc.smp_pack(OP_READ, 0, 0, b"\xbf\x61", seq=77, raw=True))
        eq(c.recv()["body"], {"rc": 3}, "bad cbor")
        pkt = smpc.smp_pack(OP_WRITE, 0, 0, {"d": "abc"}, seq=78)
        c.send_raw(pkt[:-2])
        eq(c.recv()["body"], {"rc": 9}, "truncated")
        c.send_raw(smpc.smp_pack(OP_WRITE_RSP, 0, 0, {}, seq=79))
        eq(c.recv()["body"], {"rc": 8}, "rsp op")
        # wrong type for a known key, duplicate keys
        eq(c.request(OP_WRITE, 0, 0, {"d": 5})["body"], {"rc": 3}, "echo d type")
        dup = b"\xa2\x61d\x61a\x61d\x61b"
        c.send_raw(smpc.smp_pack(OP_WRITE, 0, 0, dup, seq=80, raw=True))
        eq(c.recv()["body"], {"rc": 3}, "duplicate key")
        # empty payload is an empty map; a header shorter than 8 bytes is ignored
        c.send_raw(smpc.smp_pack(OP_READ, 0, 6, b"", seq=81, raw=True))
        eq(c.recv()["body"]["buf_count"], 2, "empty payload")
        c.send_raw(b"\x08\x00\x00")
        try:
            c.recv(0.5)
            check(False, "short header answered")
        except smpc.SmpTimeout:
            pass
        # two packets in one datagram: two answers
        c.send_raw(smpc.smp_pack(OP_WRITE, 0, 0, {"d": "1"}, seq=90) +
                   smpc.smp_pack(OP_WRITE, 0, 0, {"d": "2"}, seq=91))
        got = {c.recv()["seq"], c.recv()["seq"]}
        eq(got, {90, 91}, "two packets")
        # custom version probe
        eq(c.request(OP_READ, 64, 0, {})["body"], {"app": "1.0.0", "net": "1.0.0"})
        c.close()
        eq(sim.stop(), 0, "SIGTERM exit code")
        check("Failed to open flash area ID 2" not in sim.log())


def t_canonical(ctx):
    with ctx.start(1, QUICK + ["--canonical"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        r = c.request(OP_READ, 0, 6, {})
        eq(r["raw"][0], 0xA2, "definite map")
        eq(r["body"], {"buf_size": 2475, "buf_count": 2})
        c.close()


def t_default_state(ctx):
    with ctx.start(1, QUICK) as sim:
        c = smpc.UdpClient(sim.port(0))
        st = c.state()
        eq(len(st["images"]), 1, "only the app primary is listed")
        e = st["images"][0]
        eq((e["image"], e["slot"], e["version"]), (0, 0, "1.0.0"))
        check(e["active"] and e["confirmed"] and e["bootable"] and not e["pending"])
        eq(len(e["hash"]), 32)
        eq(st["splitStatus"], 0)
        check("Failed to open flash area ID 2: -2" in sim.log(), "net slot 0 log")
        si = c.request(OP_READ, 1, 6, {})["body"]["images"]
        eq([x["image"] for x in si], [0, 1])
        check(si[1]["slots"][1]["size"] > 0 and si[0]["max_image_size"] < si[0]["slots"][0]["size"])
        c.close()


def t_upload_errors(ctx):
    img = ctx.mkimage(size=2000)
    with ctx.start(1, QUICK) as sim:
        c = smpc.UdpClient(sim.port(0))
        up = lambda p, ver=None: c.request(OP_WRITE, 1, 1, p, ver=ver)["body"]  # noqa: E731
        eq(up({"data": img[:64], "len": len(img)}), {"err": {"group": 1, "rc": 20}}, "no off")
        eq(up({"data": img[:64], "len": len(img)}, ver=0), {"rc": 3}, "no off v1")
        eq(up({"off": 0, "data": img[:16], "len": len(img)}), {"err": {"group": 1, "rc": 22}})
        eq(up({"off": 0, "data": img[:64]}), {"err": {"group": 1, "rc": 21}}, "no len")
        eq(up({"off": 0, "data": img[:64]}, ver=0), {"rc": 3}, "no len v1")
        bad = b"\x00" * 64
        eq(up({"off": 0, "data": bad, "len": 100}), {"err": {"group": 1, "rc": 23}}, "magic")
        eq(up({"off": 0, "data": bad, "len": 100}, ver=0), {"rc": 1}, "magic v1")
        eq(up({"off": 0, "data": img[:64], "len": len(img), "sha": b"x" * 33}),
           {"err": {"group": 1, "rc": 24}}, "long sha")
        eq(up({"off": 0, "data": img[:64], "len": 10 << 20}), {"err": {"group": 1, "rc": 30}})
        eq(up({"off": 0, "data": img[:64], "len": len(img), "image": 2}),
           {"err": {"group": 1, "rc": 9}}, "image 2")
        eq(up({"off": 0, "data": img[:64], "len": 32}), {"err": {"group": 1, "rc": 31}})
        eq(up({"off": 0, "data": 5, "len": 32}), {"rc": 3}, "data type")
        # no session: any offset is answered with off 0
        eq(up({"off": 100, "data": img[100:200]}), {"off": 0}, "no session")
        sha = hashlib.sha256(img).digest()
        eq(up({"off": 0, "data": img[:1000], "len": len(img), "sha": sha}), {"off": 1000})
        eq(up({"off": 3000, "data": img[3000:4000]}), {"off": 1000}, "gap")
        eq(up({"off": 500, "data": img[500:1000]}), {"off": 1000}, "repeat")
        eq(up({"off": 1000, "data": img[1000:2000]}), {"off": 2000})
        eq(up({"off": 2000, "data": img[2000:] + b"extra"}), {"err": {"group": 1, "rc": 31}})
        # resume: chunk 0 again with the same sha continues where the device is
        eq(up({"off": 0, "data": img[:1000], "len": len(img), "sha": sha}), {"off": 2000},
           "resume")
        r = up({"off": 2000, "data": img[2000:]})
        eq(r, {"off": len(img), "match": True}, "last chunk")
        # the same image again: the slot holds it already, nothing to upload
        eq(up({"off": 0, "data": img[:1000], "len": len(img), "sha": sha}),
           {"off": len(img), "match": True}, "already there")
        # corrupt one chunk under the right sha: match false at the end
        eq(up({"off": 0, "data": img[:1000], "len": len(img), "sha": sha[:31] + b"?"}),
           {"off": 1000})
        r = up({"off": 1000, "data": img[1000:]})
        eq(r, {"off": len(img), "match": False}, "mismatch")
        # a different sha abandons the session; without sha there is no match field
        eq(up({"off": 0, "data": img[:1000], "len": len(img)}), {"off": 1000})
        eq(up({"off": 1000, "data": img[1000:]}), {"off": len(img)}, "no sha")
        c.close()


def upload_both(c, app, net, window=1):
    # window 1: Zephyr's UDP transport has 2 SMP buffers (one request, one answer)
    eq(c.upload(net, image=1, window=window), {"off": len(net), "match": True}, "net upload")
    eq(c.upload(app, image=0, window=window), {"off": len(app), "match": True}, "app upload")


def t_overwrite_confirm(ctx):
    app = ctx.mkimage("2.0.0", 30000, seed=2)
    net = ctx.mkimage("2.1.0+7", 20000, seed=3)
    with ctx.start(1, QUICK + ["--mode", "overwrite"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        upload_both(c, app, net)
        v = slot_view(c)
        eq(v[(0, 1)], {"v2.0.0"}, "uploaded app, no flags")
        eq(v[(1, 1)], {"v2.1.0.7"}, "uploaded net, no flags")
        st = c.state_write(smpc.image_hash(net), True)
        eq(slot_view(c)[(1, 1)], {"v2.1.0.7", "pending", "permanent"}, "net confirmed")
        c.state_write(smpc.image_hash(app), True)
        eq(slot_view(c)[(0, 1)], {"v2.0.0", "pending", "permanent"}, "app confirmed")
        check(st["images"], "state write returns state")
        reset_and_wait(c, sim)
        v = slot_view(c)
        eq(v, {(0, 0): {"v2.0.0", "active", "confirmed"}}, "after overwrite")
        eq(c.request(OP_READ, 64, 0, {})["body"], {"app": "2.0.0", "net": "2.1.0.7"})
        # a second reset changes nothing (no revert in overwrite-only)
        reset_and_wait(c, sim)
        eq(slot_view(c), {(0, 0): {"v2.0.0", "active", "confirmed"}})
        c.close()
        check("event: boot-install, device: fotagw-sim-0000, image: 1" in sim.log())


def t_overwrite_test_is_permanent(ctx):
    app = ctx.mkimage("3.0.0", 10000, seed=4)
    with ctx.start(1, QUICK + ["--mode", "overwrite"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        eq(c.upload(app), {"off": len(app), "match": True})
        c.state_write(smpc.image_hash(app), False)
        eq(slot_view(c)[(0, 1)], {"v3.0.0", "pending"}, "test marks pending")
        reset_and_wait(c, sim)
        eq(slot_view(c), {(0, 0): {"v3.0.0", "active", "confirmed"}}, "test is permanent")
        reset_and_wait(c, sim)
        eq(slot_view(c), {(0, 0): {"v3.0.0", "active", "confirmed"}}, "no revert")
        c.close()


def t_swap_test_confirm(ctx):
    app = ctx.mkimage("2.0.0", 10000, seed=5)
    with ctx.start(1, QUICK + ["--mode", "swap"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        eq(c.request(OP_READ, 0, 8, {"query": "mode"})["body"], {"mode": 3})
        eq(c.upload(app), {"off": len(app), "match": True})
        c.state_write(smpc.image_hash(app), False)
        eq(slot_view(c)[(0, 1)], {"v2.0.0", "pending"})
        reset_and_wait(c, sim)
        eq(slot_view(c), {(0, 0): {"v2.0.0", "active"}, (0, 1): {"v1.0.0", "confirmed"}},
           "test boot")
        c.state_write(None, True)  # confirm the running image
        eq(slot_view(c), {(0, 0): {"v2.0.0", "active", "confirmed"}, (0, 1): {"v1.0.0"}})
        reset_and_wait(c, sim)
        eq(slot_view(c), {(0, 0): {"v2.0.0", "active", "confirmed"}, (0, 1): {"v1.0.0"}},
           "stays after confirm")
        c.close()


def t_swap_revert(ctx):
    app = ctx.mkimage("2.0.0", 10000, seed=6)
    with ctx.start(1, QUICK + ["--mode", "swap"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        c.upload(app)
        c.state_write(smpc.image_hash(app), False)
        reset_and_wait(c, sim)
        eq(slot_view(c)[(0, 0)], {"v2.0.0", "active"}, "test boot")
        # while in test: a new upload has no free slot, test of anything is refused
        r = c.request(OP_WRITE, 1, 1, {"off": 0, "len": len(app), "data": app[:100]})["body"]
        eq(r, {"err": {"group": 1, "rc": 9}}, "no free slot during test")
        r = c.state_write(smpc.image_hash(app), False)
        eq(r, {"err": {"group": 1, "rc": 33}}, "test of the active slot")
        reset_and_wait(c, sim)  # nobody confirmed
        eq(slot_view(c), {(0, 0): {"v1.0.0", "active", "confirmed"}, (0, 1): {"v2.0.0"}},
           "reverted")
        check("event: boot-revert" in sim.log())
        c.close()


def t_swap_permanent(ctx):
    app = ctx.mkimage("2.0.0", 10000, seed=7)
    with ctx.start(1, QUICK + ["--mode", "swap"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        c.upload(app)
        c.state_write(smpc.image_hash(app), True)
        eq(slot_view(c)[(0, 1)], {"v2.0.0", "pending", "permanent"})
        reset_and_wait(c, sim)
        eq(slot_view(c), {(0, 0): {"v2.0.0", "active", "confirmed"}, (0, 1): {"v1.0.0"}})
        reset_and_wait(c, sim)
        eq(slot_view(c)[(0, 0)], {"v2.0.0", "active", "confirmed"}, "permanent")
        c.close()


def t_state_write_rules(ctx):
    app = ctx.mkimage("2.0.0", 10000, seed=8)
    net = ctx.mkimage("2.0.0", 8000, seed=9)
    with ctx.start(1, QUICK + ["--mode", "swap"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        eq(c.state_write(b"\x01" * 32, False), {"err": {"group": 1, "rc": 8}}, "unknown hash")
        eq(c.state_write(b"\x01" * 31, True), {"err": {"group": 1, "rc": 24}}, "short hash")
        eq(c.state_write(None, False), {"err": {"group": 1, "rc": 24}}, "test without hash")
        eq(c.state_write(b"\x01" * 32, False, ver=0), {"rc": 1}, "unknown hash v1")
        cur = smpc.slots(c.state())[(0, 0)]["hash"]
        eq(c.state_write(cur, False), {"err": {"group": 1, "rc": 33}}, "test active")
        check("images" in c.state_write(cur, True), "confirm running by hash")
        c.upload(app)
        c.upload(net, image=1)
        check("images" in c.state_write(smpc.image_hash(app), False))
        check("images" in c.state_write(smpc.image_hash(app), False), "re-test idempotent")
        eq(c.state_write(smpc.image_hash(app), True), {"err": {"group": 1, "rc": 28}},
           "confirm while test pending")
        eq(c.state_write(None, True), {"err": {"group": 1, "rc": 28}})
        # pending slot: no new upload, no erase (v2 and v1 forms)
        eq(c.request(OP_WRITE, 1, 1, {"off": 0, "len": len(app), "data": app[:64]})["body"],
           {"err": {"group": 1, "rc": 9}})
        eq(c.request(OP_WRITE, 1, 1, {"off": 0, "len": len(app), "data": app[:64]},
                     ver=0)["body"], {"rc": 6})
        eq(c.erase(), {"err": {"group": 1, "rc": 9}}, "erase pending")
        eq(c.erase(0), {"err": {"group": 1, "rc": 9}}, "erase active")
        eq(c.erase(7), {"err": {"group": 1, "rc": 14}}, "bad slot")
        # the net core secondary may be confirmed from the app core; erase of it works
        check("images" in c.state_write(smpc.image_hash(net), True))
        eq(slot_view(c)[(1, 1)], {"v2.0.0", "pending", "permanent"})
        c.close()
    with ctx.start(1, QUICK) as sim:
        c = smpc.UdpClient(sim.port(0))
        c.upload(net, image=1)
        eq(c.erase(3), {}, "erase net secondary")
        check((1, 1) not in smpc.slots(c.state()), "erased")
        eq(c.erase(2), {"err": {"group": 1, "rc": 9}}, "net primary is in use")
        c.close()


def t_ncs_order_bug(ctx):
    app = ctx.mkimage("2.0.0", 10000, seed=10)
    net = ctx.mkimage("2.0.0", 8000, seed=11)
    with ctx.start(1, QUICK) as sim:
        c = smpc.UdpClient(sim.port(0))
        upload_both(c, app, net)
        c.state_write(smpc.image_hash(app), True)  # app first: NCSDK-34106
        c.state_write(smpc.image_hash(net), True)
        reset_and_wait(c, sim)
        v = slot_view(c)
        eq(v[(0, 0)], {"v2.0.0", "active", "confirmed"})
        check((1, 1) in v, "net core update skipped: image 1 slot 1 still listed")
        eq(c.request(OP_READ, 64, 0, {})["body"]["net"], "1.0.0")
        check("NCSDK-34106" in sim.log())
        c.close()


def t_upgrade_flag(ctx):
    old = ctx.mkimage("0.9.0", 5000, seed=12)
    same = ctx.mkimage("1.0.0", 5000, seed=13)
    new = ctx.mkimage("1.0.1", 5000, seed=14)
    with ctx.start(1, QUICK) as sim:
        c = smpc.UdpClient(sim.port(0))
        for img, rc in ((old, 27), (same, 27)):
            r = c.request(OP_WRITE, 1, 1, {"off": 0, "len": len(img), "data": img[:64],
                                           "upgrade": True})["body"]
            eq(r, {"err": {"group": 1, "rc": rc}}, "upgrade check")
        r = c.request(OP_WRITE, 1, 1, {"off": 0, "len": len(new), "data": new[:64],
                                       "upgrade": True})["body"]
        eq(r, {"off": 64})
        c.close()


def t_persistence(ctx):
    app = ctx.mkimage("2.0.0", 10000, seed=15)
    state = ctx.path("persist-state")
    sim = ctx.start(1, QUICK + ["--mode", "swap"], state_dir=state)
    c = smpc.UdpClient(sim.port(0))
    c.upload(app)
    c.state_write(smpc.image_hash(app), False)
    c.close()
    eq(sim.stop(), 0, "exit code on SIGTERM")
    sim = ctx.start(1, QUICK + ["--mode", "swap"], state_dir=state)
    c = smpc.UdpClient(sim.port(0))
    eq(slot_view(c)[(0, 1)], {"v2.0.0", "pending"}, "pending survives a restart")
    reset_and_wait(c, sim)
    eq(slot_view(c)[(0, 0)], {"v2.0.0", "active"})
    c.close()
    eq(sim.stop(), 0)
    sim = ctx.start(1, QUICK + ["--mode", "swap"], state_dir=state)
    c = smpc.UdpClient(sim.port(0))
    # a restart of the simulator is a power cycle: the unconfirmed test image reverts only at
    # the next reset, and until then it is what runs
    eq(slot_view(c)[(0, 0)], {"v2.0.0", "active"}, "still in test after restart")
    c.close()
    sim.stop()
    check(os.path.exists(os.path.join(state, "dev-0000", "state")))


def t_capacity(ctx):
    def cap(link):
        out = subprocess.run([ctx.sim, "--capacity", "--devices", "3", "--udp", "127.0.0.1:4000",
                              "--link", link], capture_output=True, text=True, check=True).stdout
        return json.loads(out)
    fast, typ, slow = cap("fast"), cap("typical"), cap("slow")
    eq(len(fast), 3)
    eq(fast[2]["address"], "C0:FF:EE:00:00:02")
    eq(fast[2]["udp_port"], 4002)
    check(fast[0]["capacity_bytes_per_s"] > typ[0]["capacity_bytes_per_s"] >
          slow[0]["capacity_bytes_per_s"] > 0, "fast > typical > slow")
    check(typ[0]["capacity_bytes_per_s"] > 5 * slow[0]["capacity_bytes_per_s"])
    # a longer event holds more exchanges, more capacity; `pkts` can only lower it
    a = cap("typical,pkts=2")[0]["capacity_bytes_per_s"]
    b = cap("typical,pkts=8")[0]["capacity_bytes_per_s"]
    c = cap("typical,event=0")[0]
    eq(b, typ[0]["capacity_bytes_per_s"], "a cap above physics changes nothing")
    check(b > a * 1.4, "pkts below physics matters")
    check(c["capacity_bytes_per_s"] > b * 3, "the whole 30 ms interval: 12 exchanges, not 3")
    for d in (fast[0], typ[0], slow[0], c):
        check(d["capacity_bytes_per_s"] < d["ceiling_bytes_per_s"], "below the ceiling")
    w = cap("fast,write=50")[0]
    check(abs(w["capacity_bytes_per_s"] - 1e6 / 50) / (1e6 / 50) < 0.05, "flash-bound")
    r = subprocess.run([ctx.sim, "--capacity", "--link", "bogus=1"], capture_output=True)
    eq(r.returncode, 2, "bad --link")


def t_pipelining(ctx):
    """Several requests in flight: the device takes them without dropping one, and nobody
    beats the capacity. Counts, and one-sided bounds that a loaded host cannot break (it only
    makes uploads slower); the gain itself is a benchmark (bench/run.py pipelining_gain)."""
    img = ctx.mkimage("2.0.0", 200000, seed=16)
    link = "fast,erase=0,write=1,boot=20"
    capacity = json.loads(subprocess.run([ctx.sim, "--capacity", "--link", link],
                                         capture_output=True, text=True).stdout)[0]
    with ctx.start(1, ["--link", link, "--set", "buf_count=4"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        rates, stats = {}, {}
        for window in (1, 3):
            c.erase()
            stats[window] = {}
            t0 = time.monotonic()
            eq(c.upload(img, window=window, stats=stats[window])["off"], len(img))
            rates[window] = len(img) / (time.monotonic() - t0)
        c.close()
    print("  stop-and-wait %.0f B/s, window 3 %.0f B/s (x%.2f), capacity %.0f B/s; counts %s" %
          (rates[1], rates[3], rates[3] / rates[1], capacity["capacity_bytes_per_s"], stats))
    eq(stats[1]["max_inflight"], 1, "window 1 is stop-and-wait")
    eq(stats[1]["queued"], 0)
    eq(stats[3]["max_inflight"], 3, "window 3 keeps 3 in flight")
    eq(stats[3]["stalls"], 0, "buf_count 4 takes 3 in flight: nothing dropped")
    # Every answer but the last comes while another request is on its way or waiting.
    eq(stats[3]["queued"], stats[3]["answers"] - 1, "the device always had work queued")
    for window in (1, 3):
        check(rates[window] < capacity["capacity_bytes_per_s"] * 1.05,
              "capacity is an upper bound (window %d)" % window)


def t_buffers(ctx):
    """More requests in flight than SMP buffers: some are dropped (the client times out). Over
    UDP the answer's buffer is free once sendto() returned, so only requests arriving while one
    is processed (100 ms here) find the pool full."""
    with ctx.start(1, ["--link", "fast,erase=0,write=0,proc=100000", "--set",
                       "buf_count=2"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        eq(c.params()["buf_count"], 2)
        seqs = [c.send(OP_WRITE, 0, 0, {"d": "x" * 200}) for _ in range(6)]
        got = set()
        try:
            while True:
                got.add(c.recv(4.0)["seq"])
        except smpc.SmpTimeout:
            pass
        check(0 < len(got) < len(seqs), "some dropped: %d of %d answered" % (len(got), 6))
        # oversized packet (> buf_size) is dropped silently
        c.send(OP_WRITE, 0, 0, {"d": "y" * 2500})
        try:
            c.recv(2.0)
            check(False, "oversized packet answered")
        except smpc.SmpTimeout:
            pass
        c.close()


def t_nomem(ctx):
    """No free buffer for the response: the request is not handled and {"rc": 2} comes back in
    the request's own buffer (Zephyr smp.c: smp_alloc_rsp() fails, smp_on_err())."""
    img = ctx.mkimage(size=2000)
    chunk = {"off": 0, "data": img[:256], "len": len(img)}
    state = ctx.path("nomem-state")
    slot1 = os.path.join(state, "dev-0000", "slot1.bin")
    # one buffer: every request holds it, so no response buffer is ever free
    with ctx.start(1, QUICK + ["--set", "buf_count=1"], state_dir=state) as sim:
        c = smpc.UdpClient(sim.port(0))
        eq(c.request(OP_WRITE, 0, 0, {"d": "x"})["body"], {"rc": 2}, "echo: rc 2")
        eq(c.request(OP_WRITE, 1, 1, chunk)["body"], {"rc": 2}, "upload chunk: rc 2")
        check(not os.path.exists(slot1), "the refused chunk was not written")
        c.close()
    with ctx.start(1, QUICK + ["--set", "buf_count=2"], state_dir=state) as sim:
        c = smpc.UdpClient(sim.port(0))
        eq(c.request(OP_WRITE, 1, 1, chunk)["body"]["off"], 256, "two buffers: handled")
        check(os.path.exists(slot1), "the chunk was written")
        c.close()


def t_first_chunk_erase_time(ctx):
    """The first chunk pays for erasing the slot: seconds on external flash. The time is
    checked against the flash model as a lower bound only: a loaded host can make the answer
    later, never sooner."""
    img = ctx.mkimage("2.0.0", 200000, seed=17)
    sector, erase_ms = 4096, 40
    # len bytes of sectors plus the trailer sector (mcuboot.c, new session)
    model_s = ((len(img) + sector - 1) // sector + 1) * erase_ms / 1000.0
    with ctx.start(1, ["--link", "fast,erase=%d,write=0" % erase_ms]) as sim:
        c = smpc.UdpClient(sim.port(0))
        t0 = time.monotonic()
        r = c.request(OP_WRITE, 1, 1, {"off": 0, "len": len(img), "data": img[:1000]},
                      timeout=30)["body"]
        first = time.monotonic() - t0
        eq(r, {"off": 1000})
        eq(c.request(OP_WRITE, 1, 1, {"off": 1000, "data": img[1000:2000]})["body"],
           {"off": 2000}, "the session goes on without a second erase")
        check(first / model_s >= 0.98, "first answer %.2f s, erase model %.2f s" %
              (first, model_s))
        c.close()


def t_reset_time_grows(ctx):
    """The reset's copy time grows with the image: each reboot takes at least what the flash
    model says copying that image takes (a lower bound; load only adds to it)."""
    small = ctx.mkimage("2.0.0", 8000, seed=18)
    big = ctx.mkimage("2.0.1", 400000, seed=19)
    write_us, boot_ms = 2, 100
    times = []
    with ctx.start(1, ["--link", "fast,erase=10,write=%d,boot=%d" % (write_us, boot_ms)]) as sim:
        c = smpc.UdpClient(sim.port(0))
        for img in (small, big):
            r = c.upload(img, first_timeout=60)
            eq(r.get("off"), len(img), "upload %r" % r)
            c.state_write(smpc.image_hash(img), True)
            eq(c.reset(), {})
            t0 = time.monotonic()
            check(simtest.wait_down(c), "device went down")
            check(wait_up(c, step=0.05))
            times.append(time.monotonic() - t0)
            view = slot_view(c)[(0, 0)]
            check("active" in view and ("v2.0.0" if img is small else "v2.0.1") in view,
                  "the new image runs: %s" % view)
        c.close()
    # Whatever the mode, the new image is written once: bytes x write time, plus the boot.
    model = [boot_ms / 1000.0 + len(img) * write_us / 1e6 for img in (small, big)]
    check(model[1] > 5 * model[0], "model: the big image costs more")
    check(times[1] / model[1] >= 0.95, "big: %.2f s, model at least %.2f s" % (times[1], model[1]))


def t_cli_errors(ctx):
    for args in (["--devices", "0"], ["--mode", "nope"], ["--udp", "nohost"], ["--set", "x=1"],
                 ["--fault", "0:bogus=1"], ["--fault", "nope"], ["extra"]):
        r = subprocess.run([ctx.sim, "--state-dir", ctx.path("cli")] + args, capture_output=True,
                           timeout=10)
        eq(r.returncode, 2, "args %s" % args)
    r = subprocess.run([ctx.sim, "--devices", "1"], capture_output=True, timeout=10)
    eq(r.returncode, 2, "no state dir")
    r = subprocess.run([ctx.sim, "--help"], capture_output=True, timeout=10, text=True)
    check(r.returncode == 0 and "--capacity" in r.stdout)


OP_WRITE_RSP = smpc.OP_WRITE_RSP

if __name__ == "__main__":
    simtest.run([t_os_group, t_canonical, t_default_state, t_upload_errors, t_overwrite_confirm,
                 t_overwrite_test_is_permanent, t_swap_test_confirm, t_swap_revert,
                 t_swap_permanent, t_state_write_rules, t_ncs_order_bug, t_upgrade_flag,
                 t_persistence, t_capacity, t_pipelining, t_buffers, t_nomem,
                 t_first_chunk_erase_time, t_reset_time_grows, t_cli_errors])

#!/usr/bin/env python3
"""fotagw-sim --bluez: the fake bluetoothd on a private dbus-daemon, driven with busctl and with
fotagw-sim-blectl (an sd-bus central). Objects, discovery, connection, GATT fds and the
WriteValue/StartNotify fallback, reassembly rules, the connection limit, resets over BLE."""
import time

import simtest
from simtest import QUICK, Central, busctl, check, eq, wait_for
import simctl
import smpc
from smpc import OP_READ, OP_WRITE

SMP_SVC = "8d53dc1d-1db7-4cd3-868b-8a527460aa84"
SMP_CHR = "da2e7828-fbce-4e01-ae9e-261174997c48"


def start(ctx, bus, devices=3, args=()):
    return ctx.start(devices, QUICK + ["--temporary-timeout", "2"] + list(args), udp=False,
                     bluez=True, bus=bus)


def connected(c, addr, devices=2):
    c.ok("start-discovery")
    c.ok("wait-devices %d 5000" % devices)
    c.ok("connect %s" % addr)
    c.ok("wait-prop %s ServicesResolved true 5000" % addr)


def t_objects(ctx):
    with simctl.Bus() as bus, start(ctx, bus):
        rc, out, _ = busctl(bus, "tree", "org.bluez")
        eq(rc, 0)
        check("/org/bluez/hci0" in out and "dev_" not in out, "no devices before discovery")
        adapter = ("org.bluez", "/org/bluez/hci0", "org.bluez.Adapter1")
        eq(busctl(bus, "get-property", *adapter, "Powered")[1], "b true")
        eq(busctl(bus, "get-property", *adapter, "Discovering")[1], "b false")
        eq(busctl(bus, "get-property", *adapter, "Address")[1], 's "00:AA:01:00:00:00"')
        out = busctl(bus, "call", *adapter, "GetDiscoveryFilters")[1]
        check("Pattern" in out and "DuplicateData" in out)
        rc, _, err = busctl(bus, "call", *adapter, "StopDiscovery")
        check(rc != 0 and "No discovery started" in err, err)
        rc, _, err = busctl(bus, "call", *adapter, "RemoveDevice", "o",
                            "/org/bluez/hci0/dev_00_00_00_00_00_00")
        check(rc != 0 and "Does Not Exist" in err, err)
        rc, _, err = busctl(bus, "call", *adapter, "SetDiscoveryFilter", "a{sv}", "1", "Transport",
                            "s", "nfc")
        check(rc != 0 and "Invalid arguments" in err, err)
        out = busctl(bus, "call", "org.bluez", "/", "org.freedesktop.DBus.ObjectManager",
                     "GetManagedObjects")[1]
        check("org.bluez.Adapter1" in out)
        # the adapter can be powered off: discovery then fails with NotReady
        eq(busctl(bus, "set-property", *adapter, "Powered", "b", "false")[0], 0)
        rc, _, err = busctl(bus, "call", *adapter, "StartDiscovery")
        check(rc != 0 and "Resource Not Ready" in err, err)


def t_discovery(ctx):
    with simctl.Bus() as bus, start(ctx, bus, 3):
        with Central(ctx.blectl, bus) as c:
            c.ok("start-discovery")
            r = c.cmd("start-discovery")
            check(r.startswith("err org.bluez.Error.InProgress"), r)
            n, ms = c.ok("wait-devices 3 5000").split()
            eq(n, "3")
            path = simctl.device_path(2)
            dev = ("org.bluez", path, "org.bluez.Device1")
            eq(busctl(bus, "get-property", *dev, "Address")[1], 's "C0:FF:EE:00:00:02"')
            eq(busctl(bus, "get-property", *dev, "AddressType")[1], 's "random"')
            eq(busctl(bus, "get-property", *dev, "Name")[1], 's "fotagw-sim-0002"')
            eq(busctl(bus, "get-property", *dev, "Connected")[1], "b false")
            eq(busctl(bus, "get-property", *dev, "ServicesResolved")[1], "b false")
            eq(busctl(bus, "get-property", *dev, "Adapter")[1], 'o "/org/bluez/hci0"')
            eq(busctl(bus, "get-property", *dev, "UUIDs")[1], "as 0", "SMP UUID not advertised")
            # RSSI changes while discovering
            c.wait_events("Discovering=true", path + " RSSI=")
        # the client left the bus: its discovery session ended
        check(wait_for(lambda: busctl(bus, "get-property", "org.bluez", "/org/bluez/hci0",
                                      "org.bluez.Adapter1", "Discovering")[1] == "b false"),
              "Discovering false after the client left")
        # unseen devices are removed after the temporary timeout (2 s here)
        with Central(ctx.blectl, bus) as c:
            c.ok("wait-gone %s 5000" % simctl.device_address(2))
            # filters: pattern, UUID (the SMP UUID is not advertised by default), bad keys
            c.ok("filter pattern=C0:FF:EE:00:00:01")
            c.ok("start-discovery")
            c.ok("wait-devices 1 5000")
            # a fixed window on purpose: the others advertise within it, and must stay out
            time.sleep(1.5)
            eq(c.ok("wait-devices 1 100").split()[0], "1", "pattern filter")
            c.ok("stop-discovery")
            r = c.cmd("filter bogus=1")
            check(r.startswith("err org.bluez.Error.InvalidArguments"), r)
    with simctl.Bus() as bus, start(ctx, bus, 2, ["--fault", "1:adv_smp_uuid=true"]):
        with Central(ctx.blectl, bus) as c:
            c.ok("filter uuid=%s" % SMP_SVC)
            c.ok("start-discovery")
            c.ok("wait-devices 1 5000")
            # a fixed window on purpose: the other advertises within it, and must stay out
            time.sleep(1.5)
            eq(c.ok("wait-devices 1 100").split()[0], "1", "uuid filter")
            out = busctl(bus, "get-property", "org.bluez", simctl.device_path(1),
                         "org.bluez.Device1", "UUIDs")[1]
            check(SMP_SVC in out, out)


def t_gatt_acquire(ctx):
    img = ctx.mkimage("2.0.0", 30000, seed=21)
    with simctl.Bus() as bus, start(ctx, bus, 2) as sim:
        with Central(ctx.blectl, bus) as c:
            a = simctl.device_address(0)
            connected(c, a)
            chr_path = simctl.device_path(0) + "/service0010/char0011"
            ch = ("org.bluez", chr_path, "org.bluez.GattCharacteristic1")
            eq(busctl(bus, "get-property", *ch, "UUID")[1], 's "%s"' % SMP_CHR)
            eq(busctl(bus, "get-property", *ch, "Flags")[1],
               'as 2 "write-without-response" "notify"')
            eq(busctl(bus, "get-property", *ch, "MTU")[1], "q 498")
            svc = busctl(bus, "get-property", "org.bluez", simctl.device_path(0) + "/service0010",
                         "org.bluez.GattService1", "UUID")[1]
            eq(svc, 's "%s"' % SMP_SVC)
            uuids = busctl(bus, "get-property", "org.bluez", simctl.device_path(0),
                           "org.bluez.Device1", "UUIDs")[1]
            check(SMP_SVC in uuids, "all services after resolution")
            rc, _, err = busctl(bus, "call", *ch, "ReadValue", "a{sv}", "0")
            check(rc != 0 and "Read not permitted" in err, err)
            eq(c.ok("acquire %s" % a), "498", "acquired MTU")
            ev = c.ok("events")
            check("WriteAcquired=true" in ev and "NotifyAcquired=true" in ev, ev)
            # bluetoothd 5.66's order: Connected=true, then UUIDs + ServicesResolved=true
            check("Connected=true" in ev and "ServicesResolved=true" in ev and
                  ev.index("Connected=true") < ev.index("ServicesResolved=true"), ev)
            eq(busctl(bus, "get-property", "org.bluez", simctl.device_path(0),
                      "org.bluez.Device1", "Connected")[1], "b true")
            r = c.smp(a, smpc.smp_pack(OP_WRITE, 0, 0, {"d": "ble"}, seq=1))
            eq(r["body"], {"r": "ble"}, "echo over AcquireWrite/AcquireNotify")
            # a big response spans several notifications (MTU-3 each), reassembled by header
            r = c.smp(a, smpc.smp_pack(OP_WRITE, 0, 0, {"d": "z" * 1200}, seq=2))
            eq(r["body"], {"r": "z" * 1200})
            # second acquisition, WriteValue and StartNotify while acquired are refused
            r = c.cmd("acquire %s" % a)
            check(r.startswith("err org.bluez.Error.NotPermitted Notify acquired"), r)
            rc, _, err = busctl(bus, "call", *ch, "WriteValue", "aya{sv}", "1", "0", "0")
            check(rc != 0 and "Write acquired" in err, err)
            rc, _, err = busctl(bus, "call", *ch, "StartNotify")
            check(rc != 0 and "Notify acquired" in err, err)
            # a write larger than MTU-3 through the fd is dropped silently
            c.ok("raw-write %s %s" % (a, (b"\x0a" * 496).hex()))
            eq(c.cmd("recv %s 800" % a), "err timeout", "oversized write dropped")
            r = c.smp(a, smpc.smp_pack(OP_READ, 0, 6, {}, seq=3))
            eq(r["body"], {"buf_size": 2475, "buf_count": 4}, "still in sync")
            # an upload over BLE, packets of buf_size in 5 writes each
            off = 0
            sha = smpc.hashlib.sha256(img).digest()
            seq = 10
            while off < len(img):
                p = {"off": off, "data": img[off:off + 2300]}
                if off == 0:
                    p.update({"len": len(img), "sha": sha, "image": 0})
                r = c.smp(a, smpc.smp_pack(OP_WRITE, 1, 1, p, seq=seq & 0xFF), 20000)
                check(r is not None, "chunk at %d: %s" % (off, sim.log()[-1500:]))
                seq += 1
                off = r["body"]["off"]
            eq(r["body"], {"off": len(img), "match": True}, "upload over BLE")
            # closing the notify fd ends notifications (NotifyAcquired false)
            c.ok("close-notify %s" % a)
            c.wait_events("NotifyAcquired=false")
            c.ok("close-write %s" % a)
            t0 = time.monotonic()
            c.ok("disconnect %s" % a)
            check(time.monotonic() - t0 >= 1.9, "Disconnect takes about 2 s, like bluetoothd")
            ev = c.ok("events")
            check("ServicesResolved=false" in ev and "Connected=false" in ev, ev)
            check("removed %s/service0010" % simctl.device_path(0) in ev, ev)


def t_writevalue_fallback(ctx):
    with simctl.Bus() as bus, start(ctx, bus, 1, ["--no-acquire", "--link",
                                                   "slow,erase=0,write=0,boot=20"]):
        with Central(ctx.blectl, bus) as c:
            a = simctl.device_address(0)
            connected(c, a, 1)
            r = c.cmd("acquire %s" % a)
            check(r.startswith("err org.bluez.Error.NotSupported"), r)
            eq(c.ok("start-notify %s" % a), "23", "MTU 23 on the slow link")
            r = c.cmd("start-notify %s" % a)
            check(r.startswith("err org.bluez.Error.InProgress"), r)
            # image state (~170 bytes) needs many 20-byte notifications
            r = c.smp(a, smpc.smp_pack(OP_READ, 1, 0, {}, seq=4), 20000)
            eq(r["body"]["images"][0]["version"], "1.0.0", "state over WriteValue/StartNotify")
            ch = ("org.bluez", simctl.device_path(0) + "/service0010/char0011",
                  "org.bluez.GattCharacteristic1")
            rc, _, err = busctl(bus, "call", *ch, "WriteValue", "aya{sv}", "21", *["1"] * 21,
                                "1", "type", "s", "command")
            check(rc != 0 and "Failed to initiate write" in err, err)
            rc, _, err = busctl(bus, "call", *ch, "WriteValue", "aya{sv}", "1", "1", "1", "type",
                                "s", "request")
            check(rc != 0 and "Write not permitted" in err, err)
            c.ok("stop-notify %s" % a)
            r = c.cmd("stop-notify %s" % a)
            check(r.startswith("err org.bluez.Error.Failed No notify session started"), r)
            # no subscriber: the response is lost
            c.ok("send %s %s" % (a, smpc.smp_pack(OP_WRITE, 0, 0, {"d": "x"}, seq=5).hex()))
            eq(c.cmd("recv %s 1500" % a), "err timeout")


def t_reassembly(ctx):
    with simctl.Bus() as bus, start(ctx, bus, 1):
        with Central(ctx.blectl, bus) as c:
            a = simctl.device_address(0)
            connected(c, a, 1)
            c.ok("acquire %s" % a)
            pkt = smpc.smp_pack(OP_WRITE, 0, 0, {"d": "x" * 600}, seq=1)
            # fragments of exactly the packet: fine
            eq(c.smp(a, pkt)["body"], {"r": "x" * 600})
            # a first fragment without the whole header is dropped
            c.ok("raw-write %s %s" % (a, pkt[:5].hex()))
            eq(c.cmd("recv %s 600" % a), "err timeout", "short first fragment")
            eq(c.smp(a, smpc.smp_pack(OP_WRITE, 0, 0, {"d": "y"}, seq=2))["body"], {"r": "y"})
            # tail of one packet and head of the next in one write: both lost
            p1 = smpc.smp_pack(OP_WRITE, 0, 0, {"d": "a" * 700}, seq=3)
            p2 = smpc.smp_pack(OP_WRITE, 0, 0, {"d": "b"}, seq=4)
            c.ok("raw-write %s %s" % (a, p1[:495].hex()))
            c.ok("raw-write %s %s" % (a, (p1[495:] + p2).hex()))
            eq(c.cmd("recv %s 600" % a), "err timeout", "mixed write")
            # a packet larger than buf_size is dropped
            big = smpc.smp_pack(OP_WRITE, 0, 0, {"d": "q" * 2500}, seq=5)
            c.ok("send %s %s" % (a, big.hex()))
            eq(c.cmd("recv %s 800" % a), "err timeout", "oversized packet")
            eq(c.smp(a, smpc.smp_pack(OP_WRITE, 0, 0, {"d": "ok"}, seq=6))["body"], {"r": "ok"})


def t_buffer_pool(ctx):
    """Zephyr's pool of buf_count SMP buffers over BLE (docs/simulator.md "Buffers"): the work
    queue holds a request and its answer until the answer's notification went out, queued
    requests and the reassembly take the rest, and a first fragment that finds none is dropped
    without a word (a Write Without Response has no error to carry)."""
    # 800 ms per request: the four sends below (through blectl and D-Bus) land well within the
    # first request's processing, even on a loaded host
    slow = ["--link", "fast,erase=0,write=0,boot=20,proc=800000"]
    with simctl.Bus() as bus, start(ctx, bus, 1, slow):
        with Central(ctx.blectl, bus) as c:
            a = simctl.device_address(0)
            connected(c, a, 1)
            c.ok("acquire %s" % a)
            eq(c.smp(a, smpc.smp_pack(OP_READ, 0, 6, {}, seq=1))["body"]["buf_count"], 4)
            # 4 requests back to back: #1 is processed (request + answer buffers), #2 and #3
            # wait in the queue, #4 finds no buffer and is gone
            for seq in range(10, 14):
                c.ok("send %s %s" % (a, smpc.smp_pack(OP_WRITE, 0, 0, {"d": "x" * 1500},
                                                        seq=seq).hex()))
            got = []
            while True:
                r = c.cmd("recv %s 2500" % a)
                if r == "err timeout":
                    break
                got.append(smpc.smp_unpack(bytes.fromhex(r[3:]))["seq"])
            eq(got, [10, 11, 12], "the fourth request had no buffer")
            # the pool is whole again afterwards
            eq(c.smp(a, smpc.smp_pack(OP_WRITE, 0, 0, {"d": "y"}, seq=20))["body"], {"r": "y"})


def t_connection_limit(ctx):
    """Beyond --max-connections the controller refuses: org.bluez.Error.Failed
    le-connection-refused, and a freed link makes room again."""
    with simctl.Bus() as bus, start(ctx, bus, 3, ["--max-connections", "2",
                                                   "--disconnect-delay", "300"]):
        with Central(ctx.blectl, bus) as c:
            c.ok("start-discovery")
            c.ok("wait-devices 3 5000")
            addrs = [simctl.device_address(i) for i in range(3)]
            c.ok("connect %s" % addrs[0])
            c.ok("connect %s" % addrs[1])
            r = c.cmd("connect %s" % addrs[2])
            eq(r, "err org.bluez.Error.Failed le-connection-refused", "limit (HCI 0x0d)")
            eq(busctl(bus, "get-property", "org.bluez", simctl.device_path(2),
                      "org.bluez.Device1", "Connected")[1], "b false", "refused: not connected")
            r = c.cmd("connect %s" % addrs[0])
            check(r.startswith("ok"), "Connect when connected succeeds: " + r)
            c.ok("disconnect %s" % addrs[0])
            c.ok("connect %s" % addrs[2])
            eq(busctl(bus, "get-property", "org.bluez", simctl.device_path(2),
                      "org.bluez.Device1", "Connected")[1], "b true")


def t_reset_over_ble(ctx):
    app = ctx.mkimage("2.0.0", 8000, seed=22)
    with simctl.Bus() as bus, start(ctx, bus, 1, ["--link", "fast,erase=0,write=0,boot=800"]):
        with Central(ctx.blectl, bus) as c:
            a = simctl.device_address(0)
            connected(c, a, 1)
            c.ok("acquire %s" % a)
            sha = smpc.hashlib.sha256(app).digest()
            off, seq = 0, 1
            while off < len(app):
                p = {"off": off, "data": app[off:off + 2300]}
                if off == 0:
                    p.update({"len": len(app), "sha": sha})
                off = c.smp(a, smpc.smp_pack(OP_WRITE, 1, 1, p, seq=seq))["body"]["off"]
                seq += 1
            c.smp(a, smpc.smp_pack(OP_WRITE, 1, 0, {"hash": smpc.image_hash(app),
                                                    "confirm": True}, seq=50))
            c.ok("events")
            eq(c.smp(a, smpc.smp_pack(OP_WRITE, 0, 5, {}, seq=51))["body"], {}, "reset reply")
            # link loss is seen after 250 ms + the supervision timeout
            c.ok("wait-prop %s Connected false 5000" % a)
            ev = c.ok("events")
            check("hup-notify" in ev and "Connected=false" in ev, ev)
            # while it boots it does not advertise: a connection attempt waits for it
            t0 = time.monotonic()
            c.ok("connect %s 10000" % a)
            check(time.monotonic() - t0 > 0.2, "connected only after the reboot")
            c.ok("wait-prop %s ServicesResolved true 5000" % a)
            c.ok("acquire %s" % a)
            st = c.smp(a, smpc.smp_pack(OP_READ, 1, 0, {}, seq=52))["body"]
            eq(st["images"][0]["version"], "2.0.0", "new image after reboot")


def t_out_of_range(ctx):
    with simctl.Bus() as bus, start(ctx, bus, 2, ["--connect-timeout", "800",
                                                   "--fault", "1:out_of_range_at_chunk=0"]):
        with Central(ctx.blectl, bus) as c:
            a = simctl.device_address(1)
            connected(c, a)
            c.ok("acquire %s" % a)
            p = smpc.smp_pack(OP_WRITE, 1, 1, {"off": 0, "len": 100, "data": b"\x3d" * 40},
                              seq=1)
            eq(c.smp(a, p, 1000), None, "no answer from a vanished device")
            c.ok("wait-prop %s Connected false 3000" % a)
            r = c.cmd("connect %s" % a)
            eq(r, "err org.bluez.Error.Failed le-connection-abort-by-local", "connect fails")
            c.ok("wait-gone %s 6000" % a)
            eq(c.cmd("connect %s" % a).split()[1], "org.freedesktop.DBus.Error.UnknownObject")


def t_bluez_restart(ctx):
    """SIGUSR1: the fake bluetoothd leaves the bus (the link drops, the fds hang up) and comes
    back after --bluez-restart-ms, or at the next SIGUSR1; the device keeps its upload session."""
    import signal
    img = ctx.mkimage(size=6000)
    sha = smpc.hashlib.sha256(img).digest()
    # 1.5 s away: long enough for busctl polls on a loaded host to see the gap
    with simctl.Bus() as bus, start(ctx, bus, 1, ["--bluez-restart-ms", "1500"]) as sim:
        def owned():
            return busctl(bus, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                          "org.freedesktop.DBus", "NameHasOwner", "s",
                          "org.bluez")[1].strip() == "b true"

        with Central(ctx.blectl, bus) as c:
            a = simctl.device_address(0)
            connected(c, a, devices=1)
            c.ok("acquire %s" % a)
            p = {"off": 0, "data": img[:2000], "len": len(img), "sha": sha, "image": 0}
            r = c.smp(a, smpc.smp_pack(OP_WRITE, 1, 1, p, seq=1), 20000)
            eq(r["body"]["off"], 2000, "first chunk")
            sim.proc.send_signal(signal.SIGUSR1)
            check(wait_for(lambda: not owned()), "org.bluez released")
            c.wait_events("hup-notify")  # the acquired fds hung up
        check(wait_for(owned), "org.bluez back after --bluez-restart-ms")
        with Central(ctx.blectl, bus) as c:
            connected(c, a, devices=1)
            c.ok("acquire %s" % a)
            # same image again at offset 0: the device answers with its offset (resume)
            r = c.smp(a, smpc.smp_pack(OP_WRITE, 1, 1, p, seq=2), 20000)
            eq(r["body"]["off"], 2000, "the upload session survived the bluetoothd restart")
        # 0: away until the next SIGUSR1
    with simctl.Bus() as bus, start(ctx, bus, 1, ["--bluez-restart-ms", "0"]) as sim:
        sim.proc.send_signal(signal.SIGUSR1)
        check(wait_for(lambda: not owned()), "released")
        time.sleep(0.6)  # a fixed window on purpose: proves it does not come back by itself
        check(not owned(), "stays away with --bluez-restart-ms 0")
        sim.proc.send_signal(signal.SIGUSR1)
        check(wait_for(owned), "back at the second SIGUSR1")
        eq(sim.stop(), 0, "exit status")
    check("SIGUSR1" in __import__("subprocess").run([ctx.sim, "--help"], capture_output=True,
                                                     text=True).stdout, "--help mentions SIGUSR1")


if __name__ == "__main__":
    simtest.run([t_objects, t_discovery, t_gatt_acquire, t_writevalue_fallback, t_reassembly,
                 t_buffer_pool,
                 t_connection_limit, t_reset_over_ble, t_out_of_range, t_bluez_restart])

#!/usr/bin/env python3
"""fotagw-sim's radio: the links of one adapter share its airtime, the controller takes one LE
connection attempt at a time (the kernel queues the others), and refuses links beyond its
limit with what bluetoothd 5.66 reports for HCI 0x0d (test_bluez.py t_connection_limit)."""
import json
import subprocess
import threading
import time

import simtest
from simtest import Central, busctl, check, eq
import simctl
import smpc

# The device is not the bottleneck: no flash time, so uploads measure the air alone.
LINK = ["--link", "fast,erase=0,write=0,boot=20"]


def start(ctx, bus, devices, args=(), udp=False):
    return ctx.start(devices, LINK + list(args), udp=udp, bluez=True, bus=bus)


def connect_all(c, n):
    c.ok("start-discovery")
    c.ok("wait-devices %d 5000" % n)
    for i in range(n):
        c.ok("connect %s" % simctl.device_address(i))


def t_capacity_below_ceiling(ctx):
    for link in ("fast", "typical", "slow", "fast,encrypt=true", "typical,phy=2m",
                 "slow,phy=coded,interval=30,event=0"):
        out = subprocess.run([ctx.sim, "--capacity", "--link", link], capture_output=True,
                             text=True, check=True).stdout
        d = json.loads(out)[0]
        check(0 < d["capacity_bytes_per_s"] < d["ceiling_bytes_per_s"], link + ": " + out)
        check(d["capacity_ble_bytes_per_s"] <= d["capacity_bytes_per_s"], link)
    # a link on which not one exchange fits into an event is refused with a reason
    r = subprocess.run([ctx.sim, "--capacity", "--link", "fast,phy=coded"], capture_output=True,
                       text=True)
    eq(r.returncode, 2)
    check("cannot hold one full LL exchange" in r.stderr, r.stderr)


def upload_goodput(port, image):
    c = smpc.UdpClient(port, timeout=20.0)
    try:
        c.erase(slot=1)
        t0 = time.monotonic()
        body = c.upload(image, window=3)
        dt = time.monotonic() - t0
        check(body.get("off") == len(image), "upload finished: %r" % body)
        return len(image) / dt
    finally:
        c.close()


def concurrent_goodputs(sim, image, devices):
    res, errs = {}, []

    def run(i):
        try:
            res[i] = upload_goodput(sim.port(i), image)
        except Exception as e:  # reported below
            errs.append(e)
    th = [threading.Thread(target=run, args=(i,)) for i in devices]
    for t in th:
        t.start()
    for t in th:
        t.join()
    check(not errs, repr(errs))
    return res


# 1M PHY without DLE at 30 ms: 44 exchanges of 27 bytes per interval, 39.6 kB/s of LL payload.
# Slow enough that a loaded host's Python client and simulator keep up with it, so the
# ratios below are the radio's, not the CPU's.
RADIO_LINK = ["--link", "fast,phy=1m,dle=27,mtu=247,interval=30,erase=0,write=0,boot=20"]


def t_shared_radio(ctx):
    """Three links on one adapter each get about a third of what a link with the air to itself
    gets at the same time; their sum stays below the ceiling."""
    image = ctx.mkimage(size=40000)
    with simctl.Bus() as bus, ctx.start(4, RADIO_LINK, udp=True, bluez=True, bus=bus) as sim:
        ceiling = json.loads(subprocess.run(
            [ctx.sim, "--capacity"] + RADIO_LINK, capture_output=True, text=True,
            check=True).stdout)[0]["ceiling_bytes_per_s"]
        with Central(ctx.blectl, bus) as c:
            connect_all(c, 3)
            # device 3 stays unconnected: its link has the air to itself (the UDP side door
            # goes through the same link model as BLE, sharing the adapter's radio once
            # connected)
            res = concurrent_goodputs(sim, image, range(4))
            shares = [res[i] / res[3] for i in range(3)]
            print("alone %.0f B/s, shared %r, ceiling %.0f" % (res[3], res, ceiling))
            for s in shares:
                check(0.22 < s < 0.45, "each link gets about a third: %r" % shares)
            check(sum(res[i] for i in range(3)) <= ceiling * 1.02,
                  "aggregate above the ceiling %.0f: %r" % (ceiling, res))
            # links that leave give their share back
            c.ok("disconnect %s" % simctl.device_address(1))
            c.ok("disconnect %s" % simctl.device_address(2))
            res = concurrent_goodputs(sim, image, (0, 3))
            check(res[0] / res[3] > 0.7, "one link again: %r" % res)


def t_serial_connect(ctx):
    """Concurrent Device1.Connect calls all succeed, one LE connection attempt at a time."""
    # a 100 ms interval: each link-up takes 2 intervals + 20 ms, long enough that all four
    # calls arrive while the first attempt is on the air
    with simctl.Bus() as bus, start(ctx, bus, 4, ["--set", "interval=100"]) as sim:
        with Central(ctx.blectl, bus) as c:
            c.ok("start-discovery")
            c.ok("wait-devices 4 5000")
            procs = [subprocess.Popen(
                ["busctl", "--address=" + bus.address, "--timeout=30", "call", "org.bluez",
                 simctl.device_path(i), "org.bluez.Device1", "Connect"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
            for p in procs:
                out, err = p.communicate(timeout=40)
                eq(p.returncode, 0, "Connect: " + err)
            log = sim.log()
            eq(log.count("event: ble-connect-queued"), 3, "three attempts waited")
            eq(log.count("event: ble-connected"), 4)
            for i in range(4):
                eq(busctl(bus, "get-property", "org.bluez", simctl.device_path(i),
                          "org.bluez.Device1", "Connected")[1], "b true")


def t_adapters(ctx):
    """--adapters 2: each device is heard by its own subset of adapters with its own RSSI; a
    device linked through one adapter does not answer the other; limits are per adapter; an
    adapter can be unplugged (SimControl1.RemoveAdapter) and its objects leave the bus."""
    args = ["--adapters", "2", "--max-connections", "1", "--connect-timeout", "1500",
            "--disconnect-delay", "200",
            "--fault", "0:adapters=hci0:-50", "--fault", "1:adapters=hci1:-70",
            "--fault", "2:adapters=hci0:-80;hci1:-55"]
    with simctl.Bus() as bus, start(ctx, bus, 3, args) as sim:
        tree = busctl(bus, "tree", "org.bluez")[1]
        check("/org/bluez/hci0" in tree and "/org/bluez/hci1" in tree, tree)
        eq(busctl(bus, "get-property", "org.bluez", "/org/bluez/hci1", "org.bluez.Adapter1",
                  "Address")[1], 's "00:AA:01:00:00:01"')
        with Central(ctx.blectl, bus) as c:
            a = [simctl.device_address(i) for i in range(3)]
            for ad, want in (("hci0", {0, 2}), ("hci1", {1, 2})):
                c.ok("adapter " + ad)
                c.ok("start-discovery")
                c.ok("wait-devices 2 5000")
                for i in range(3):
                    rc = busctl(bus, "get-property", "org.bluez",
                                simctl.device_path(i, "/org/bluez/" + ad),
                                "org.bluez.Device1", "RSSI")[0]
                    eq(rc == 0, i in want, "device %d heard by %s" % (i, ad))
            # each adapter reports device 2 near its own mean (a random walk around it)
            def rssi_near_means():
                outs = []
                for ad, mean in (("hci0", -80), ("hci1", -55)):
                    out = busctl(bus, "get-property", "org.bluez",
                                 simctl.device_path(2, "/org/bluez/" + ad),
                                 "org.bluez.Device1", "RSSI")[1]
                    outs.append(ad + " RSSI " + out)
                    if abs(int(out.split()[1]) - mean) > 6:
                        return False, outs
                return True, outs
            end = time.monotonic() + 5
            good, outs = rssi_near_means()
            while not good and time.monotonic() < end:
                time.sleep(0.1)
                good, outs = rssi_near_means()
            check(good, "; ".join(outs))
            c.ok("adapter hci1")
            c.ok("connect %s" % a[2])
            # linked through hci1, the device no longer advertises: hci0 cannot reach it
            c.ok("adapter hci0")
            eq(c.cmd("connect %s" % a[2]),
               "err org.bluez.Error.Failed le-connection-abort-by-local")
            c.ok("connect %s" % a[0])  # hci0 has a limit of its own
            c.ok("adapter hci1")
            eq(c.cmd("connect %s" % a[1]), "err org.bluez.Error.Failed le-connection-refused")
            # unplug hci1: the link through it drops, its objects go
            simctl.remove_adapter(bus, "hci1")
            c.ok("wait-gone %s 3000" % a[2])
            check("/org/bluez/hci1" not in busctl(bus, "tree", "org.bluez")[1], "hci1 gone")
            check("event: adapter-removed, adapter: hci1" in sim.log())
            rc, _, err = busctl(bus, "call", "org.bluez", "/org/fotagw/sim",
                                "org.fotagw.SimControl1", "RemoveAdapter", "s", "hci1")
            check(rc != 0 and "No such adapter" in err, err)
            # device 2 is free again and hci0 takes it once it has room
            c.ok("adapter hci0")
            c.ok("disconnect %s" % a[0])
            c.ok("connect %s" % a[2])


def rpa_objects(bus, identity_path):
    """Device1 paths under hci0 other than @identity_path's device 1."""
    tree = busctl(bus, "tree", "org.bluez")[1]
    return {w.strip("─│├└ ") for w in tree.split()
            if "/dev_" in w and "/service" not in w and "/char" not in w
            and not w.endswith(identity_path.rsplit("/", 1)[1])}


def newest_rpa(sim, other_than=None, timeout=5):
    """The address of device 0's newest rpa-rotated event that is not @other_than (bounded)."""
    end = time.monotonic() + timeout
    while True:
        for line in reversed(sim.log().splitlines()):
            if "event: rpa-rotated, device: fotagw-sim-0000" in line:
                addr = line.rsplit("address: ", 1)[1].strip()
                if addr != other_than:
                    return addr
                break
        check(time.monotonic() < end, "device 0 rotated its address within %d s" % timeout)
        time.sleep(0.05)


def t_rpa_rotation(ctx):
    """rpa_rotate_s: an unbonded device shows up as a new Device1 (AddressType random) for each
    new RPA; once bonded, BlueZ resolves it: one object, the identity address, no new ones."""
    args = ["--temporary-timeout", "30", "--fault", "0:rpa_rotate_s=1"]
    with simctl.Bus() as bus, start(ctx, bus, 2, args) as sim:
        ident1 = simctl.device_path(1)
        with Central(ctx.blectl, bus) as c:
            c.ok("start-discovery")
            seen = set()
            end = time.monotonic() + 10
            while len(seen) < 3 and time.monotonic() < end:
                seen |= rpa_objects(bus, ident1)
                time.sleep(0.2)
            check(len(seen) >= 3, "new objects for new RPAs: %r" % seen)
            check(simctl.device_path(0) not in seen, "the identity address is never seen")
            for path in seen:
                addr = path.rsplit("dev_", 1)[1].replace("_", ":")
                eq(int(addr[:2], 16) >> 6, 1, "resolvable private: top bits 01 (%s)" % addr)
            # the static-address device is one object throughout
            eq(busctl(bus, "get-property", "org.bluez", ident1, "org.bluez.Device1",
                      "Address")[1], 's "C0:FF:EE:00:00:01"')
            # connect to the newest RPA and bond: the object stays, Address becomes the identity
            current = newest_rpa(sim)
            r = c.cmd("connect %s 5000" % current)
            if not r.startswith("ok"):  # it rotated just then: the next one
                current = newest_rpa(sim, other_than=current)
                c.ok("connect %s 5000" % current)
            path = "/org/bluez/hci0/dev_" + current.replace(":", "_")
            eq(busctl(bus, "get-property", "org.bluez", path, "org.bluez.Device1",
                      "AddressType")[1], 's "random"')
            rc, _, err = busctl(bus, "call", "org.bluez", path, "org.bluez.Device1", "Pair")
            eq(rc, 0, err)
            eq(busctl(bus, "get-property", "org.bluez", path, "org.bluez.Device1",
                      "Address")[1], 's "C0:FF:EE:00:00:00"')
            c.ok("disconnect %s" % current)
            n = sim.log().count("event: rpa-rotated, device: fotagw-sim-0000, adapter: hci0")
            # An absence is proven by time: 2.5 rotation periods (rpa_rotate_s = 1) in which an
            # unbonded device would have rotated at least twice. No event marks "did not rotate".
            time.sleep(2.5)
            eq(sim.log().count("event: rpa-rotated, device: fotagw-sim-0000, adapter: hci0"), n,
               "a bonded device keeps its object")
            c.ok("connect %s 5000" % current)


if __name__ == "__main__":
    simtest.run([t_capacity_below_ceiling, t_shared_radio, t_serial_connect,
                 t_adapters, t_rpa_rotation])

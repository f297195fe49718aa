#!/usr/bin/env python3
"""Smoke test of the real BlueZ stack in the VM, both ends through bluetoothd's D-Bus API.

peripheral: registers, on one adapter, a GATT application with the SMP service and
    characteristic (GattManager1.RegisterApplication) and an advertisement carrying the SMP
    service UUID and a name (LEAdvertisingManager1). Every write to the characteristic comes
    back as notifications (split to fit the ATT MTU); reads return the last value written.
central: on another adapter, does what fotagw's ble transport does: discovery filtered on the
    SMP UUID, Device1.Connect, ServicesResolved, WriteValue/ReadValue, then AcquireWrite +
    AcquireNotify and echoes frames, then Disconnect. One PASS/FAIL line per step, figures in
    a JSON file; exit status 0 only when every step passed.

Needs python3-dbus and python3-gi (Debian). Runs inside the guest as root.
"""
import argparse
import json
import os
import select
import signal
import sys
import time

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

SMP_SERVICE = "8d53dc1d-1db7-4cd3-868b-8a527460aa84"
SMP_CHAR = "da2e7828-fbce-4e01-ae9e-261174997c48"
BLUEZ = "org.bluez"
OBJMGR = "org.freedesktop.DBus.ObjectManager"
PROPS = "org.freedesktop.DBus.Properties"
CHAR_IFACE = "org.bluez.GattCharacteristic1"
# bluetoothd 5.66 as a GATT server hands an application's characteristic at most 510 bytes
# per write (longer ones are dropped or refused with "Invalid Length").
MAX_APP_VALUE = 510


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------
# Peripheral


class EchoCharacteristic(dbus.service.Object):
    def __init__(self, bus, path, service_path):
        super().__init__(bus, path)
        self.path = path
        self.service_path = service_path
        self.value = b""
        self.notifying = False
        self.writes = 0
        self.bytes_in = 0

    def properties(self):
        return {
            "Service": dbus.ObjectPath(self.service_path),
            "UUID": SMP_CHAR,
            "Flags": dbus.Array(["read", "write", "write-without-response", "notify"],
                                signature="s"),
        }

    @dbus.service.method(PROPS, in_signature="s", out_signature="a{sv}")
    def GetAll(self, interface):
        return self.properties()

    @dbus.service.method(CHAR_IFACE, in_signature="a{sv}", out_signature="ay")
    def ReadValue(self, options):
        offset = int(options.get("offset", 0))
        return dbus.ByteArray(self.value[offset:])

    @dbus.service.method(CHAR_IFACE, in_signature="aya{sv}")
    def WriteValue(self, value, options):
        data = bytes(value)
        self.writes += 1
        self.bytes_in += len(data)
        self.value = data
        mtu = int(options.get("mtu", 23))
        if self.writes <= 3 or self.writes % 25 == 0:
            opts = ",".join(f"{k}={v}" for k, v in sorted(options.items()) if k != "device")
            log(f"peripheral: write #{self.writes} {len(data)} B options[{opts}]"
                f" ({self.bytes_in} B so far)")
        if not self.notifying:
            return
        # A notification from a bluetoothd server to a bluetoothd client may go out as
        # "Handle Multiple Value Notification", which carries 2 more header bytes: stay <= MTU-5.
        step = max(20, mtu - 5)
        for i in range(0, len(data), step):
            self.PropertiesChanged(CHAR_IFACE, {"Value": dbus.ByteArray(data[i:i + step])}, [])

    @dbus.service.method(CHAR_IFACE)
    def StartNotify(self):
        log("peripheral: notifications on")
        self.notifying = True

    @dbus.service.method(CHAR_IFACE)
    def StopNotify(self):
        log("peripheral: notifications off")
        self.notifying = False

    @dbus.service.signal(PROPS, signature="sa{sv}as")
    def PropertiesChanged(self, interface, changed, invalidated):
        pass


class Application(dbus.service.Object):
    def __init__(self, bus, path):
        super().__init__(bus, path)
        self.path = path
        self.service_path = path + "/smp"
        self.char = EchoCharacteristic(bus, self.service_path + "/char", self.service_path)

    @dbus.service.method(OBJMGR, out_signature="a{oa{sa{sv}}}")
    def GetManagedObjects(self):
        return {
            dbus.ObjectPath(self.service_path): {"org.bluez.GattService1": {
                "UUID": SMP_SERVICE, "Primary": True}},
            dbus.ObjectPath(self.char.path): {CHAR_IFACE: self.char.properties()},
        }


class Advertisement(dbus.service.Object):
    def __init__(self, bus, path, name):
        super().__init__(bus, path)
        self.path = path
        self.name = name

    @dbus.service.method(PROPS, in_signature="s", out_signature="a{sv}")
    def GetAll(self, interface):
        # Discoverable adds the Flags field; without it plain "scan on" ignores the advert.
        return {"Type": "peripheral", "ServiceUUIDs": dbus.Array([SMP_SERVICE], signature="s"),
                "LocalName": self.name, "Discoverable": True}

    @dbus.service.method("org.bluez.LEAdvertisement1")
    def Release(self):
        log("peripheral: advertisement released by bluetoothd")


def run_peripheral(args):
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()
    adapter = bus.get_object(BLUEZ, "/org/bluez/" + args.adapter)
    loop = GLib.MainLoop()
    app = Application(bus, "/fgw/vm/app")
    adv = Advertisement(bus, "/fgw/vm/adv", args.name)
    t0 = time.monotonic()
    state = {"adv_busy": True, "failed": False}

    def fatal(what):
        def handler(err):
            log(f"peripheral: FAIL {what}: {err}")
            state["failed"] = True
            loop.quit()
        return handler

    def app_ok():
        log(f"peripheral: GATT application registered on {args.adapter}"
            f" ({time.monotonic() - t0:.2f}s)")

    def adv_ok():
        state["adv_busy"] = False
        log(f"peripheral: advertising '{args.name}' on {args.adapter} ({time.monotonic() - t0:.2f}s)")

    gatt = dbus.Interface(adapter, "org.bluez.GattManager1")
    gatt.RegisterApplication(app.path, {}, reply_handler=app_ok,
                             error_handler=fatal("RegisterApplication"))
    advm = dbus.Interface(adapter, "org.bluez.LEAdvertisingManager1")
    advm.RegisterAdvertisement(adv.path, {}, reply_handler=adv_ok,
                               error_handler=fatal("RegisterAdvertisement"))

    # btvirt (BlueZ 5.66) delivers an advertising report only when scanning or advertising gets
    # enabled, and the kernel may drop that first report: a central that starts scanning after
    # us can miss us for good. Re-registering re-enables advertising, which reports again.
    # Never overlap the calls: bluetoothd 5.66 aborts on an Unregister during a Register.
    def readvertise():
        if state["adv_busy"]:
            return True
        state["adv_busy"] = True

        def again():
            advm.RegisterAdvertisement(adv.path, {}, reply_handler=done, error_handler=soft)

        def done():
            state["adv_busy"] = False

        def soft(err):
            # Expected while connected: bluetoothd stops connectable advertising then.
            state["adv_busy"] = False

        advm.UnregisterAdvertisement(adv.path, reply_handler=again, error_handler=soft)
        return True

    if args.readvertise_ms > 0:
        GLib.timeout_add(args.readvertise_ms, readvertise)
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    loop.run()
    log(f"peripheral: stopping, {app.char.writes} writes, {app.char.bytes_in} bytes received")
    return 1 if state["failed"] else 0


# ---------------------------------------------------------------------------------------------
# Central


class Central:
    def __init__(self, args):
        self.args = args
        self.bus = dbus.SystemBus()
        self.objmgr = dbus.Interface(self.bus.get_object(BLUEZ, "/"), OBJMGR)
        self.adapter_path = "/org/bluez/" + args.adapter
        self.failures = 0
        self.figures = {}

    def step(self, name, ok, t0, detail=""):
        dt = time.monotonic() - t0
        self.figures[name] = round(dt, 3)
        if not ok:
            self.failures += 1
        log(f"central: {'PASS' if ok else 'FAIL'} {name} ({dt:.2f}s) {detail}".rstrip())
        return ok

    def prop(self, path, iface, name):
        return dbus.Interface(self.bus.get_object(BLUEZ, path), PROPS).Get(iface, name)

    def wait(self, cond, limit):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.05)
        return cond()

    def find_device(self):
        for path, ifaces in self.objmgr.GetManagedObjects().items():
            dev = ifaces.get("org.bluez.Device1")
            if (dev and path.startswith(self.adapter_path + "/") and
                    str(dev.get("Name", "")) == self.args.name and
                    SMP_SERVICE in [str(u) for u in dev.get("UUIDs", [])]):
                return path
        return None

    def run(self):
        a = self.args
        adapter = dbus.Interface(self.bus.get_object(BLUEZ, self.adapter_path), "org.bluez.Adapter1")

        t = time.monotonic()
        adapter.SetDiscoveryFilter({"Transport": "le",
                                    "UUIDs": dbus.Array([SMP_SERVICE], signature="s")})
        adapter.StartDiscovery()
        found = self.wait(self.find_device, a.scan_timeout)
        dev_path = self.find_device()
        adapter.StopDiscovery()
        if not self.step("discover", found, t, str(dev_path)):
            return 1

        t = time.monotonic()
        dev = dbus.Interface(self.bus.get_object(BLUEZ, dev_path), "org.bluez.Device1")
        dev.Connect(timeout=60)
        # Do not wait for a Connected=true signal: with btvirt, bluetoothd 5.66 may never send
        # it. The Connect reply plus ServicesResolved is the connection.
        resolved = self.wait(lambda: bool(self.prop(dev_path, "org.bluez.Device1",
                                                    "ServicesResolved")), 30)
        connected = bool(self.prop(dev_path, "org.bluez.Device1", "Connected"))
        if not self.step("connect + ServicesResolved", resolved and connected, t,
                         f"Connected={connected}"):
            return 1

        chars = [p for p, i in self.objmgr.GetManagedObjects().items()
                 if p.startswith(dev_path + "/") and
                 str(i.get(CHAR_IFACE, {}).get("UUID", "")) == SMP_CHAR]
        if not self.step("SMP characteristic found", len(chars) == 1, time.monotonic(),
                         str(chars)):
            return 1
        ch = dbus.Interface(self.bus.get_object(BLUEZ, chars[0]), CHAR_IFACE)

        for size in (12, 300):  # 300 B: a long write and a long read (Read Blob) through ATT
            t = time.monotonic()
            payload = bytes((i * 7 + size) & 0xFF for i in range(size))
            ch.WriteValue(dbus.ByteArray(payload), {"type": "request"})
            back = bytes(ch.ReadValue({}))
            self.step(f"WriteValue+ReadValue {size} B", back == payload, t, f"read {len(back)} B")

        t = time.monotonic()
        nfd, nmtu = ch.AcquireNotify({})
        wfd, wmtu = ch.AcquireWrite({})
        nfd, wfd, mtu = nfd.take(), wfd.take(), int(wmtu)
        self.figures["mtu"] = mtu
        self.step("AcquireNotify + AcquireWrite", nfd >= 0 and wfd >= 0, t,
                  f"mtu={mtu} notify-mtu={int(nmtu)}")

        def echo(payload):
            os.write(wfd, payload)
            got = b""
            while len(got) < len(payload):
                r, _, _ = select.select([nfd], [], [], 10)
                if not r:
                    break
                chunk = os.read(nfd, 4096)
                if not chunk:
                    break
                got += chunk
            return got

        for size in sorted({20, 244, min(mtu - 3, MAX_APP_VALUE)}):
            t = time.monotonic()
            good = 0
            for k in range(a.frames):
                payload = bytes(((k + i) * 13) & 0xFF for i in range(size))
                good += echo(payload) == payload
            dt = time.monotonic() - t
            self.figures[f"echo_{size}_ms"] = round(dt / a.frames * 1000, 1)
            self.figures[f"echo_{size}_kib_s"] = round(a.frames * size / dt / 1024, 2)
            self.step(f"{a.frames} echoes of {size} B", good == a.frames, t,
                      f"{good} ok, {dt / a.frames * 1000:.1f} ms each,"
                      f" {a.frames * size / dt / 1024:.1f} KiB/s each way")
        os.close(wfd)
        os.close(nfd)

        t = time.monotonic()
        dev.Disconnect()
        gone = self.wait(lambda: not bool(self.prop(dev_path, "org.bluez.Device1", "Connected")), 15)
        self.step("Disconnect", gone, t)
        return 1 if self.failures else 0


def run_central(args):
    c = Central(args)
    try:
        rc = c.run()
    except dbus.exceptions.DBusException as e:
        log(f"central: FAIL D-Bus error: {e.get_dbus_name()}: {e.get_dbus_message()}")
        rc = 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(c.figures, f, indent=1)
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("peripheral")
    p.add_argument("--adapter", default="hci1")
    p.add_argument("--name", default="fgw-vm")
    p.add_argument("--readvertise-ms", type=int, default=1000)
    c = sub.add_parser("central")
    c.add_argument("--adapter", default="hci0")
    c.add_argument("--name", default="fgw-vm")
    c.add_argument("--frames", type=int, default=20)
    c.add_argument("--scan-timeout", type=float, default=30)
    c.add_argument("--json")
    args = ap.parse_args()
    return run_peripheral(args) if args.mode == "peripheral" else run_central(args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""BLE session discipline and security: fotagw-smp (and its lib/bluez) against fotagw-sim
--bluez on a private dbus-daemon. The simulator models what bluetoothd 5.66 does (RSSI 127
dropped by a kernel RSSI filter, the "Notify acquired" wedge after a link loss during a
pending AcquireNotify, Disconnect lingering ~2 s), and the checks read the simulator's own
state and log, not only the tool's word. Each case owns a temp dir, the bus and the sim.

  test_ble_secure.py CASE --smp fotagw-smp --sim fotagw-sim --mkimage mkimage.py
  CASE: rssi-invalid | rssi-weak | back-to-back | settle | pair-ok | pair-none |
        pair-wrong | pair-unpair
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_ble import Bus, Sim, image_sha256_tlv, log, make_image  # noqa: E402

SMALL_IMAGE = 24 * 1024


def smp(args, bus, argv, timeout=120):
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address)
    cmd = [args.smp] + argv
    log("$", " ".join(cmd))
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    r.elapsed = time.monotonic() - t0
    log(r.stdout + r.stderr)
    return r


def busctl(bus, *argv):
    r = subprocess.run(["busctl", "--address=" + bus.address] + list(argv),
                       capture_output=True, text=True, timeout=10)
    return r


def connected(bus, addr):
    path = "/org/bluez/hci0/dev_" + addr.replace(":", "_")
    r = busctl(bus, "get-property", "org.bluez", path, "org.bluez.Device1", "Connected")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip() == "b true"


def sim_log(tmp):
    with open(os.path.join(tmp, "sim.log")) as f:
        return f.read()


def find_addr(args, bus, rssi=None):
    argv = ["--json"] + (["--rssi", str(rssi)] if rssi is not None else []) + \
        ["scan", "--seconds", "3"]
    r = smp(args, bus, argv)
    assert r.returncode == 0, r.stderr
    import json
    return json.loads(r.stdout.strip().splitlines()[-1])["devices"]


def case_rssi_invalid(args, bus, tmp):
    # The device reports RSSI 127 ("not available"); the default threshold is -90 dBm.
    devs = find_addr(args, bus)
    assert len(devs) == 1, devs
    assert "rssi" not in devs[0], devs  # unknown, not a number
    # and it is usable: a command over the link
    r = smp(args, bus, ["--transport", "ble:" + devs[0]["addr"], "echo", "hello"])
    assert r.returncode == 0, r.stderr


def case_rssi_weak(args, bus, tmp):
    # A real RSSI below the threshold is still filtered (by fotagw itself now).
    assert find_addr(args, bus, rssi=-60) == []
    assert len(find_addr(args, bus, rssi=-100)) == 1


def case_back_to_back(args, bus, tmp, rounds=3):
    """image upload, then image list 0.1 s later, several times: fotagw-smp must leave only
    once its Disconnect is done, so the next command never connects into a dying link."""
    addr = find_addr(args, bus)[0]["addr"]
    image = make_image(args, tmp, SMALL_IMAGE)
    tr = ["--transport", "ble:" + addr]
    for i in range(rounds):
        r = smp(args, bus, tr + ["image", "upload", image])
        assert r.returncode == 0, r.stderr
        # the tool left only after bluetoothd carried out its Disconnect
        assert not connected(bus, addr), "fotagw-smp left with the link still up"
        time.sleep(0.1)  # the scenario, not a wait: the next command follows at once
        r = smp(args, bus, tr + ["--json", "image", "list"])
        assert r.returncode == 0, r.stderr
        assert "Notify acquired" not in r.stderr, r.stderr
        assert not connected(bus, addr), "fotagw-smp left with the link still up"
    # bluetoothd (the simulator's) still answers AcquireNotify on the characteristic
    r = smp(args, bus, tr + ["echo", "still-alive"])
    assert r.returncode == 0, r.stderr
    log_text = sim_log(tmp)
    assert "bluez-notify-wedged" not in log_text, "the simulated bluetoothd was wedged"
    assert "ble-connect-while-disconnecting" not in log_text, \
        "a Connect() went into a link whose Disconnect was pending"


def case_settle(args, bus, tmp):
    """Another client's Disconnect is pending: fotagw-smp waits for Connected=false before
    its own Connect() (it would otherwise land in the dying link)."""
    addr = find_addr(args, bus)[0]["addr"]
    path = "/org/bluez/hci0/dev_" + addr.replace(":", "_")
    r = busctl(bus, "call", "--timeout=30", "org.bluez", path, "org.bluez.Device1", "Connect")
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address)
    # Disconnect() from another process that leaves without waiting for the answer
    d = subprocess.Popen(["busctl", "--address=" + bus.address, "call", "--timeout=10",
                          "org.bluez", path, "org.bluez.Device1", "Disconnect"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while "event: ble-disconnect-pending" not in sim_log(tmp):
        assert time.monotonic() < deadline, "the Disconnect never reached bluetoothd"
        time.sleep(0.05)  # a poll step of the bounded wait above
    assert connected(bus, addr)
    r = smp(args, bus, ["--transport", "ble:" + addr, "echo", "after-you"])
    d.wait(timeout=10)
    assert r.returncode == 0, r.stderr
    log_text = sim_log(tmp)
    assert "ble-connect-while-disconnecting" not in log_text, log_text[-2000:]
    assert "bluez-notify-wedged" not in log_text


PASSKEY = "123456"


def passkey_file(tmp, value):
    path = os.path.join(tmp, "passkey-" + value)
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)
    return path


def slot1_hash(args, bus, tr):
    import json
    r = smp(args, bus, tr + ["--json", "image", "list"])
    assert r.returncode == 0, r.stderr
    imgs = json.loads(r.stdout.strip().splitlines()[-1])["images"]
    return [i["hash"] for i in imgs if i["slot"] == 1]


def case_pair_ok(args, bus, tmp):
    """An authenticated device with the right passkey: paired once, the upload lands (read
    back from the device), and the next session reuses the bond without an agent call."""
    addr = find_addr(args, bus)[0]["addr"]
    image = make_image(args, tmp, SMALL_IMAGE)
    tr = ["--transport", "ble:" + addr]
    r = smp(args, bus, tr + ["--passkey-file", passkey_file(tmp, PASSKEY), "image", "upload",
                             image])
    assert r.returncode == 0, r.stderr
    assert PASSKEY not in r.stdout + r.stderr, "the passkey was printed"
    text = sim_log(tmp)
    assert text.count("event: paired,") == 1, text[-3000:]
    assert "level: authenticated" in text
    # the stored bond is reused: no passkey needed, no second pairing
    assert slot1_hash(args, bus, tr) == [image_sha256_tlv(image)]
    text = sim_log(tmp)
    assert text.count("event: paired,") == 1, text[-3000:]
    assert "bluez-acquire-notify-unanswered" not in text


def case_pair_none(args, bus, tmp):
    """No passkey against an authenticated device: fails fast saying pairing is needed."""
    addr = find_addr(args, bus)[0]["addr"]
    r = smp(args, bus, ["--transport", "ble:" + addr, "image", "list"], timeout=60)
    assert r.returncode != 0, r.stdout
    assert r.elapsed < 30, "took %.1f s" % r.elapsed
    assert "pairing required" in r.stderr, r.stderr
    assert "timed out" not in r.stderr.lower(), r.stderr
    text = sim_log(tmp)
    # never AcquireNotify unsecured (BlueZ 5.66 would not answer it and crash later)
    assert "bluez-acquire-notify-unanswered" not in text, text[-3000:]
    # bluetoothd's own security raise may leave a Just Works bond, never an authenticated one
    assert "level: authenticated" not in text


def case_pair_wrong(args, bus, tmp):
    """A wrong passkey: refused with its reason, and tried once, not in a loop."""
    addr = find_addr(args, bus)[0]["addr"]
    r = smp(args, bus, ["--transport", "ble:" + addr, "--passkey-file",
                        passkey_file(tmp, "654321"), "image", "list"], timeout=60)
    assert r.returncode != 0, r.stdout
    assert r.elapsed < 30, "took %.1f s" % r.elapsed
    assert "AuthenticationFailed" in r.stderr, r.stderr
    assert "654321" not in r.stdout + r.stderr, "the passkey was printed"
    text = sim_log(tmp)
    assert text.count("event: pairing-failed") == 1, text[-3000:]
    assert "event: paired," not in text


def case_pair_unpair(args, bus, tmp):
    """fotagw-smp pair, then unpair: the bond is gone from bluetoothd afterwards."""
    addr = find_addr(args, bus)[0]["addr"]
    tr = ["--transport", "ble:" + addr]
    r = smp(args, bus, tr + ["--passkey-file", passkey_file(tmp, PASSKEY), "pair"])
    assert r.returncode == 0, r.stderr
    assert "new bond" in r.stdout, r.stdout
    r = smp(args, bus, tr + ["pair"])  # again: the bond is reused
    assert r.returncode == 0, r.stderr
    assert "already held" in r.stdout, r.stdout
    assert sim_log(tmp).count("event: paired,") == 1
    r = smp(args, bus, tr + ["unpair"])
    assert r.returncode == 0, r.stderr
    find_addr(args, bus)  # seen again, without a bond
    r = smp(args, bus, tr + ["image", "list"], timeout=60)
    assert r.returncode != 0 and "pairing required" in r.stderr, r.stderr


AUTHEN = ["--set", "security=authen", "--set", "passkey=" + PASSKEY]

CASES = {
    "pair-ok": (case_pair_ok, AUTHEN),
    "pair-none": (case_pair_none, AUTHEN),
    "pair-wrong": (case_pair_wrong, AUTHEN),
    "pair-unpair": (case_pair_unpair, AUTHEN),
    "rssi-invalid": (case_rssi_invalid, ["--set", "rssi=127"]),
    "rssi-weak": (case_rssi_weak, ["--set", "rssi=-80"]),
    "back-to-back": (case_back_to_back, []),
    "settle": (case_settle, []),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--smp", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--mkimage", required=True)
    args = ap.parse_args()
    fn, extra = CASES[args.case]
    extra = ["--devices", "1", "--seed", "1", "--set", "adv_smp_uuid=true",
             "--link", "fast,erase=0,write=0,boot=20"] + extra
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    with tempfile.TemporaryDirectory(prefix="fgw-ble-sec-") as tmp:
        bus = Bus(tmp)
        sim = Sim(args, bus, tmp, extra)
        try:
            # our own simulator: not starting is a failure, never a skip
            assert sim.start(), "fotagw-sim --bluez did not take org.bluez:\n" + sim_log(tmp)
            fn(args, bus, tmp)
        finally:
            sim.stop()
            bus.stop()
    log("PASS", args.case)
    return 0


if __name__ == "__main__":
    sys.exit(main())

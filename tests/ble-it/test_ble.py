#!/usr/bin/env python3
"""BLE acceptance tests: fgw-ble-it (fotagw's lib/bluez + ble transport + smp + upload) against
fotagw-sim --bluez on a private dbus-daemon. Each case owns a temp dir, the bus and the sim, and
stops them all. A simulator that does not take org.bluez is a failure (exit 1), never a skip:
it is our own simulator, so not starting is a bug to see.

  test_ble.py CASE --tool fgw-ble-it --sim fotagw-sim --mkimage mkimage.py
  CASE: scan | upload | upload-fallback | concurrent | limit | restart
"""
import argparse
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

IMAGE_SIZE = 300 * 1024


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Bus:
    def __init__(self, tmp):
        self.sock = os.path.join(tmp, "bus")
        conf = os.path.join(tmp, "bus.conf")
        with open(conf, "w") as f:
            f.write(
                '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"\n'
                ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
                "<busconfig><listen>unix:path=%s</listen><auth>EXTERNAL</auth>\n"
                '<policy context="default"><allow user="*"/><allow own="*"/>\n'
                '<allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>\n'
                "</policy></busconfig>\n" % self.sock)
        self.proc = subprocess.Popen(
            ["dbus-daemon", "--nofork", "--nopidfile", "--nosyslog", "--config-file", conf],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.address = "unix:path=" + self.sock
        # ready when it accepts connections (the socket file appears before listen())
        deadline = time.time() + 5
        while True:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.sock)
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("dbus-daemon did not start")
                time.sleep(0.02)

    def has_bluez(self):
        r = subprocess.run(
            ["busctl", "--address=" + self.address, "call", "org.freedesktop.DBus",
             "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner", "s", "org.bluez"],
            capture_output=True, text=True, timeout=5)
        return r.returncode == 0 and r.stdout.strip() == "b true"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=5)


class Sim:
    def __init__(self, args, bus, tmp, extra):
        self.cmd = [args.sim, "--bluez", "--state-dir", os.path.join(tmp, "sim")] + extra
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address)
        self.bus = bus
        os.makedirs(os.path.join(tmp, "sim"), exist_ok=True)
        self.log = open(os.path.join(tmp, "sim.log"), "a")
        self.proc = None

    def start(self, wait=10):
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.time() + wait
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.bus.has_bluez():
                return True
            time.sleep(0.1)
        return False

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)

    def stop(self):
        self.kill(signal.SIGTERM)
        self.log.close()


def image_sha256_tlv(path):
    """The MCUboot SHA256 TLV of an image: what the device reports as the slot's hash."""
    data = open(path, "rb").read()
    hdr_size, prot_size, img_size = struct.unpack_from("<HHI", data, 8)
    off = hdr_size + img_size
    if prot_size:
        off += prot_size
    magic, total = struct.unpack_from("<HH", data, off)
    assert magic == 0x6907, "no TLV info at %d" % off
    end, off = off + total, off + 4
    while off < end:
        t, n = struct.unpack_from("<HH", data, off)
        if t == 0x10:
            return data[off + 4:off + 4 + n].hex()
        off += 4 + n
    raise AssertionError("no SHA256 TLV")


def run_tool(args, bus, argv, timeout=180, bg=False):
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address)
    cmd = [args.tool] + argv
    log("$", " ".join(cmd))
    if bg:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def json_lines(out):
    rows = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def scan(args, bus, seconds=4):
    r = run_tool(args, bus, ["scan", "--seconds", str(seconds)], timeout=seconds + 30)
    log(r.stderr)
    assert r.returncode == 0, "scan failed: %s" % r.stderr
    return [d for d in json_lines(r.stdout) if d.get("smp")]


def make_image(args, tmp, size=IMAGE_SIZE):
    path = os.path.join(tmp, "app.bin")
    subprocess.run([sys.executable, args.mkimage, "-o", path, "--version", "2.0.0+1",
                    "--size", str(size)], check=True, timeout=60)
    return path


def check_uploads(rows, image, n):
    want = image_sha256_tlv(image)
    peers = [r for r in rows if "peer" in r]
    assert len(peers) == n, rows
    for p in peers:
        assert p["err"] == 0, p
        assert p["hash"] == want, (p, want)
    return peers


def case_scan(args, bus, tmp):
    devs = scan(args, bus)
    assert len(devs) == 3, devs
    assert len({d["addr"] for d in devs}) == 3


def case_upload(args, bus, tmp, fallback=False):
    devs = scan(args, bus)
    image = make_image(args, tmp)
    argv = ["upload"] + (["--no-acquire"] if fallback else []) + [image, "ble:" + devs[0]["addr"]]
    r = run_tool(args, bus, argv)
    log(r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    p = check_uploads(json_lines(r.stdout), image, 1)[0]
    assert p["acquired"] is (not fallback), p


def case_concurrent(args, bus, tmp, n=8, limit=8):
    devs = scan(args, bus, seconds=5)
    assert len(devs) >= n, devs
    image = make_image(args, tmp)
    argv = ["upload", "--max-connections", str(limit), image] + \
        ["ble:" + d["addr"] for d in devs[:n]]
    r = run_tool(args, bus, argv, timeout=600)
    log(r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json_lines(r.stdout)
    check_uploads(rows, image, n)
    summary = [x for x in rows if x.get("summary")][0]
    assert summary["max_active"] <= limit, summary
    # every slot is used when there is more work than slots
    assert summary["max_active"] == min(n, limit), summary


def sim_can_restart_bluez(args):
    """Whether fotagw-sim restarts only its bluetoothd on SIGUSR1 (devices keep their state)."""
    r = subprocess.run([args.sim, "--help"], capture_output=True, text=True, timeout=10)
    return "SIGUSR1" in (r.stdout + r.stderr)


def wait_progress(tool, percent, timeout=120):
    """Reads the upload tool's stderr until it reports @percent of the image done; returns what
    it read (the rest comes with communicate()). Fails if the tool ends or stays below."""
    seen = b""
    fd = tool.stderr.fileno()
    deadline = time.monotonic() + timeout
    while True:
        text = seen.decode(errors="replace")
        for line in text[:text.rfind("\n") + 1].splitlines():  # whole lines only
            if line.startswith("event: progress,") and int(line.rsplit(" ", 1)[1]) >= percent:
                return text
        left = deadline - time.monotonic()
        r, _, _ = select.select([fd], [], [], max(left, 0))
        chunk = os.read(fd, 4096) if r else b""
        if not chunk:
            raise AssertionError("no %d %% progress reported: %s" % (percent, seen))
        seen += chunk


def case_restart(args, bus, tmp, sim):
    devs = scan(args, bus)
    image = make_image(args, tmp)
    tool = run_tool(args, bus, ["upload", "--retries", "10", image, "ble:" + devs[0]["addr"]],
                    bg=True)
    early = wait_progress(tool, 10)  # mid-upload: a tenth on the device, nine to go
    assert tool.poll() is None, "upload ended before the restart"
    only_bluez = sim_can_restart_bluez(args)
    if only_bluez:
        # bluetoothd leaves the bus and comes back; the devices keep their upload session
        sim.proc.send_signal(signal.SIGUSR1)
    else:
        # The simulator cannot restart its bluetoothd alone: restart all of it, which is a
        # power cycle of the devices (their upload session is lost, so the upload restarts).
        log("NOTE: fotagw-sim has no SIGUSR1 bluetoothd restart; power-cycling the simulator")
        sim.kill(signal.SIGTERM)
        sim.proc.wait(timeout=10)
        assert sim.start(), "simulator did not come back"
    out, err = tool.communicate(timeout=300)
    err = early + err
    log(err)
    assert tool.returncode == 0, out + err
    assert "event: link-lost" in err, err
    p = check_uploads(json_lines(out), image, 1)[0]
    assert p["reconnects"] >= 1, p
    if only_bluez:
        assert p["resumed_from"] > 0, p  # continued from the device's offset, not from 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--tool", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--mkimage", required=True)
    args = ap.parse_args()

    devices = {"scan": 3, "concurrent": 8, "limit": 20}.get(args.case, 1)
    # Zephyr smp_svr-like adverts carry the SMP service UUID, which the default discovery
    # filter (ble.filter_service) looks for; NCS-like devices (the simulator's default) do not.
    extra = ["--devices", str(devices), "--seed", "1", "--set", "adv_smp_uuid=true"]
    if args.case == "upload-fallback":
        extra.append("--no-acquire")
    if args.case != "restart":
        # quick flash; the restart case keeps the typical link so that it is still mid-upload
        # when bluetoothd goes away
        extra += ["--link", "fast,erase=0,write=0,boot=20"]
    # CTest's timeout sends SIGTERM: turn it into an exception so that finally stops all
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    with tempfile.TemporaryDirectory(prefix="fgw-ble-it-") as tmp:
        bus = Bus(tmp)
        sim = Sim(args, bus, tmp, extra)
        try:
            if not sim.start():
                log("FAIL: fotagw-sim --bluez did not take org.bluez (see %s/sim.log)" % tmp)
                with open(os.path.join(tmp, "sim.log")) as f:
                    log(f.read()[-2000:])
                return 1
            if args.case == "scan":
                case_scan(args, bus, tmp)
            elif args.case == "upload":
                case_upload(args, bus, tmp)
            elif args.case == "upload-fallback":
                case_upload(args, bus, tmp, fallback=True)
            elif args.case == "concurrent":
                case_concurrent(args, bus, tmp, n=8, limit=8)
            elif args.case == "limit":
                case_concurrent(args, bus, tmp, n=20, limit=8)
            elif args.case == "restart":
                case_restart(args, bus, tmp, sim)
            else:
                log("unknown case", args.case)
                return 2
        finally:
            sim.stop()
            bus.stop()
    log("PASS", args.case)
    return 0


if __name__ == "__main__":
    sys.exit(main())

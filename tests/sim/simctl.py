#!/usr/bin/env python3
"""Start and stop a private dbus-daemon and fotagw-sim for tests, the demo and benchmarks.

As a module:
    with simctl.Bus() as bus, simctl.Sim(sim_path, devices=4, bluez=True, bus=bus) as sim:
        sim.port(0)                 # UDP port of device 0 (when udp=True)
        bus.env                     # environment with DBUS_SYSTEM_BUS_ADDRESS set
        sim.address(0)              # "C0:FF:EE:00:00:00"
        remove_adapter(bus, "hci1") # with --adapters 2: unplug hci1
Both stop their process (SIGTERM, then SIGKILL after a grace period) and remove their temp dirs.

As a command:
    simctl.py run [--sim PATH] [--devices N] [--no-udp] [--no-bluez] [--state-dir DIR]
                  [--sim-arg ARG ...] -- COMMAND [ARGS...]
runs COMMAND with DBUS_SYSTEM_BUS_ADDRESS, FOTAGW_SIM_UDP_BASE, FOTAGW_SIM_DEVICES and
FOTAGW_SIM_STATE_DIR set, then stops everything and exits with COMMAND's status.
"""
import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DBUS_CONF = os.path.join(HERE, "dbus-test.conf")


def device_address(i):
    """Device i's Bluetooth address, the same on every run."""
    return "C0:FF:EE:00:%02X:%02X" % ((i >> 8) & 0xFF, i & 0xFF)


def device_path(i, adapter="/org/bluez/hci0"):
    return adapter + "/dev_" + device_address(i).replace(":", "_")


def remove_adapter(bus, name):
    """Unplugs adapter `name` ("hci1") of a `--bluez --adapters N` simulator: its links drop,
    its Device1 objects and then its Adapter1 leave the bus (docs/simulator.md)."""
    subprocess.run(["busctl", "--address=" + bus.address, "call", "org.bluez", "/org/fotagw/sim",
                    "org.fotagw.SimControl1", "RemoveAdapter", "s", name], check=True,
                   capture_output=True, timeout=10)


def free_udp_base(n, host="127.0.0.1", tries=200):
    """A base port such that base..base+n-1 are all free for UDP right now."""
    for _ in range(tries):
        base = random.randint(20000, 60000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((host, p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port range of %d" % n)


def _stop(proc, grace=10.0):
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc else None
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class Bus:
    """A private dbus-daemon listening on a unix socket in a temporary directory."""

    def __init__(self, timeout=10.0):
        self.dir = tempfile.mkdtemp(prefix="fotagw-bus-")
        self.socket = os.path.join(self.dir, "system_bus_socket")
        self.address = "unix:path=" + self.socket
        self.proc = subprocess.Popen(
            ["dbus-daemon", "--config-file", DBUS_CONF, "--address", self.address, "--nofork",
             "--nopidfile", "--print-address"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("unix:"):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.close()
            raise RuntimeError("dbus-daemon did not start: %s" % err)
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address)

    def close(self):
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Sim:
    """fotagw-sim with its own state directory (unless given) and free UDP ports."""

    def __init__(self, sim_path, devices=1, udp=True, bluez=False, bus=None, args=(),
                 state_dir=None, timeout=30.0, log_level=None, stderr_path=None):
        self.devices = devices
        self.own_state = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="fotagw-sim-")
        os.makedirs(self.state_dir, exist_ok=True)
        self.udp_base = free_udp_base(devices) if udp else None
        log_level = log_level or os.environ.get("FOTAGW_SIM_LOG_LEVEL", "notice")
        cmd = [sim_path, "--devices", str(devices), "--state-dir", self.state_dir,
               "--log-level", log_level]
        if udp:
            cmd += ["--udp", "127.0.0.1:%d" % self.udp_base]
        env = dict(os.environ)
        if bluez:
            if bus is None:
                raise ValueError("bluez=True needs a bus")
            cmd.append("--bluez")
            env = bus.env
        cmd += list(args)
        self.cmd = cmd
        self.stderr_path = stderr_path or os.path.join(self.state_dir, "sim.log")
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
                                     text=True)
        self.ready_line = self._wait_ready(timeout)

    def _wait_ready(self, timeout):
        out = {}

        def reader():
            out["line"] = self.proc.stdout.readline()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        line = out.get("line", "")
        if not line.startswith("fotagw-sim: ready"):
            rc = _stop(self.proc)
            self._stderr.close()
            log = open(self.stderr_path).read()[-4000:]
            self._cleanup()
            raise RuntimeError("fotagw-sim did not start (rc %s): %s" % (rc, log))
        return line.strip()

    def port(self, i):
        return self.udp_base + i

    def address(self, i):
        return device_address(i)

    def log(self):
        if not self._stderr.closed:
            self._stderr.flush()
        with open(self.stderr_path) as f:
            return f.read()

    def stop(self, grace=10.0):
        """SIGTERM (the simulator saves state and exits 0); returns the exit code."""
        rc = _stop(self.proc, grace)
        if not self._stderr.closed:
            self._stderr.close()
        return rc

    def _cleanup(self):
        if self.own_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def close(self):
        self.stop()
        self._cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a command with a private bus and fotagw-sim")
    run.add_argument("--sim", default=os.environ.get("FOTAGW_SIM", "fotagw-sim"))
    run.add_argument("--devices", type=int, default=4)
    run.add_argument("--no-udp", action="store_true")
    run.add_argument("--no-bluez", action="store_true")
    run.add_argument("--state-dir")
    run.add_argument("--sim-arg", action="append", default=[],
                     help="extra fotagw-sim argument (repeatable), e.g. --sim-arg=--mode=swap")
    run.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("no command given after --")
    bus = None if a.no_bluez else Bus()
    try:
        with Sim(a.sim, devices=a.devices, udp=not a.no_udp, bluez=not a.no_bluez, bus=bus,
                 args=a.sim_arg, state_dir=a.state_dir) as sim:
            env = dict(bus.env if bus else os.environ)
            env["FOTAGW_SIM_DEVICES"] = str(a.devices)
            env["FOTAGW_SIM_STATE_DIR"] = sim.state_dir
            if sim.udp_base is not None:
                env["FOTAGW_SIM_UDP_BASE"] = str(sim.udp_base)
            rc = subprocess.call(cmd, env=env)
    finally:
        if bus:
            bus.close()
    sys.exit(rc)


if __name__ == "__main__":
    main()

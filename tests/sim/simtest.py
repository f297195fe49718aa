"""Shared bits of the simulator tests: arguments, images, a small test runner."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import simctl  # noqa: E402
import smpc  # noqa: E402

# Fast link for functional tests: flash and boot cost almost nothing.
QUICK = ["--link", "fast,erase=0,write=0,boot=20"]


class Ctx:
    def __init__(self, args):
        self.sim = args.sim
        self.mkimage_py = args.mkimage
        self.blectl = args.blectl
        self.tmp = tempfile.mkdtemp(prefix="fotagw-simtest-")
        self.n = 0

    def path(self, name):
        return os.path.join(self.tmp, name)

    def mkimage(self, version="2.0.0", size=20000, seed=1, key=None, key_type=None,
                corrupt=None, name=None):
        self.n += 1
        out = self.path(name or "img%d.bin" % self.n)
        cmd = [sys.executable, self.mkimage_py, "-o", out, "--version", version, "--size",
               str(size), "--seed", str(seed)]
        if key:
            cmd += ["--key", key, "--key-type", key_type]
        if corrupt:
            cmd += ["--corrupt", corrupt]
        subprocess.run(cmd, check=True, capture_output=True)
        with open(out, "rb") as f:
            return f.read()

    def keygen(self, kind, name):
        out = self.path(name)
        algo = {"ed25519": ["-algorithm", "ed25519"],
                "ecdsa-p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                "rsa-2048": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]}[kind]
        subprocess.run(["openssl", "genpkey"] + algo + ["-out", out], check=True,
                       capture_output=True)
        return out

    def start(self, devices=1, args=(), **kw):
        return simctl.Sim(self.sim, devices=devices, args=list(args), **kw)

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait_up(c, timeout=20.0, step=0.2):
    """Polls echo until the device answers again (after a reset)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c.echo("up", timeout=step)
            return True
        except smpc.SmpTimeout:
            pass
    return False


def wait_down(c, timeout=5.0, step=0.05):
    """Polls echo until the device stops answering (it resets 250 ms after its reply)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c.echo("down?", timeout=step)
            time.sleep(step)  # a poll step of the bounded wait
        except smpc.SmpTimeout:
            return True
    return False


def wait_for(cond, timeout=5.0, step=0.05):
    """Polls cond() until it holds: True, or False after timeout. The bound is generous
    because the host may be loaded: a passing test never waits for it."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)  # a poll step of the bounded wait
    return True


def resets(sim):
    """How many device resets the simulator has logged so far."""
    return sim.log().count("event: reset,")


def reset_and_wait(c, sim, timeout=20.0):
    """Resets the device (it goes down 250 ms after its reply), waits until the simulator has
    logged the reset, then until the device answers again."""
    n = resets(sim)
    eq(c.reset(), {}, "reset reply")
    check(wait_for(lambda: resets(sim) > n), "the device reset")
    check(wait_up(c, timeout), "device came back")


def slot_view(c):
    s = smpc.slots(c.state())
    return {k: {f for f in ("active", "confirmed", "pending", "permanent") if v.get(f)} |
            {"v" + v["version"]} for k, v in s.items()}


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def eq(a, b, msg=""):
    if a != b:
        raise AssertionError("%s: %r != %r" % (msg, a, b))


def run(tests):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", required=True)
    ap.add_argument("--mkimage", required=True)
    ap.add_argument("--blectl")
    ap.add_argument("-k", help="run only tests whose name contains this")
    args = ap.parse_args()
    ctx = Ctx(args)
    failed = []
    try:
        for t in tests:
            if args.k and args.k not in t.__name__:
                continue
            t0 = time.monotonic()
            try:
                t(ctx)
                print("ok   %-40s %.1fs" % (t.__name__, time.monotonic() - t0), flush=True)
            except Exception:
                failed.append(t.__name__)
                print("FAIL %s" % t.__name__, flush=True)
                traceback.print_exc()
    finally:
        ctx.close()
    print("%d failed" % len(failed) if failed else "all passed")
    sys.exit(1 if failed else 0)


class Central:
    """A fotagw-sim-blectl process on the test bus: one command line in, one line out."""

    def __init__(self, blectl, bus):
        self.proc = subprocess.Popen([blectl], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=bus.env, text=True)
        eq(self._read(10), "ready", "blectl start")

    def _read(self, timeout):
        import select
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise TimeoutError("blectl did not answer")
        return self.proc.stdout.readline().strip()

    def cmd(self, line, timeout=60):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def ok(self, line, timeout=60):
        r = self.cmd(line, timeout)
        if not r.startswith("ok"):
            raise AssertionError("%s -> %s" % (line, r))
        return r[3:]

    def wait_events(self, *needles, timeout=5.0):
        """Collects events (each "events" call pumps 100 ms) until every needle has been
        seen; returns all collected. AssertionError after timeout."""
        seen = ""
        deadline = time.monotonic() + timeout
        while True:
            seen += " " + self.ok("events")
            if all(n in seen for n in needles):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError("events %s not seen in %.1f s: %s" % (needles, timeout, seen))

    def smp(self, addr, pkt, timeout_ms=5000):
        r = self.cmd("smp %s %s %d" % (addr, pkt.hex(), timeout_ms), timeout_ms / 1000 + 10)
        if r == "err timeout":
            return None
        if not r.startswith("ok "):
            raise AssertionError("smp: " + r)
        return smpc.smp_unpack(bytes.fromhex(r[3:]))

    def close(self):
        try:
            self.cmd("quit", 5)
        except Exception:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def busctl(bus, *args):
    r = subprocess.run(["busctl", "--system", "--no-pager"] + list(args), env=bus.env,
                       capture_output=True, text=True, timeout=20)
    return r.returncode, r.stdout.strip(), r.stderr.strip()

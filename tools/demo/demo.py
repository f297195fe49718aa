#!/usr/bin/env python3
"""fotagw demo: a complete dual-core fleet rollout on this machine, no Bluetooth, no server.

  tools/demo/demo.py            (what `make demo` runs after `make deps build`)

Makes a demo key pair and a signed release (app + net core MCUboot images, NCS-style bundle,
signed manifest) with `fotactl release`, serves it from a directory (file://), starts a private
dbus-daemon, `fotagw-sim --bluez` as bluetoothd with a fleet of simulated nRF5340 devices
(tools/demo/scenario.ini), and `fotagwd` with tools/demo/fotagw-demo.conf.in. Then it shows
`fotactl watch` (or, without a terminal, plain progress lines) until every device's job has
ended, and prints what each device ran before and after, read from the devices themselves.
Everything it started is stopped and its temp dir removed at the end, also on Ctrl-C.

Environment (all optional):
  DEMO_DEVICES=N     fleet size (default 24)
  CI=true            plain progress lines instead of `fotactl watch` (also without a terminal)
  FGW_BUILD=DIR      build tree with the binaries (default: build/ in the repository)
  FOTAGWD, FOTACTL, FOTAGW_SIM   paths of the three binaries (override FGW_BUILD)
  DEMO_SUMMARY=FILE  also write the summary as JSON to FILE
  DEMO_TIMEOUT=S     give up after S seconds of rollout (default 600)
  DEMO_KEEP=1        keep the temp dir (logs, database, release) and print its path
  DEMO_SCREENSHOT=FILE  save a PNG of the gateway's status page (http://.../ in headless
                     Chromium) while the devices upload
  DEMO_STAY=1        after the summary, keep the fleet and fotagwd running until Ctrl-C, to
                     look around with fotactl or curl (the API is on 127.0.0.1:8370 if free)
Exit status: 0 when every device ended as the scenario says it should (healthy ones on the new
release in both cores, faulty ones failed or reverted with a reason), 1 otherwise, 130 when
interrupted.
"""
import configparser
import ctypes
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from string import Template

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "sim"))
import simctl  # noqa: E402  (device addresses, free ports, the test bus configuration)
sys.path.insert(0, os.path.join(REPO, "tests", "web-it"))
import cdp  # noqa: E402  (headless Chromium over the DevTools protocol)
import smpc  # noqa: E402  (SMP over UDP, independent of fotagw's C code)

SCENARIO = os.path.join(HERE, "scenario.ini")
CONF_TEMPLATE = os.path.join(HERE, "fotagw-demo.conf.in")
VERSION = "2.0.0"
RELEASE_ID = "fw-" + VERSION
# Bodies of the new images. A real NCS application with BLE is 200-500 KiB and the net core's
# hci_ipc about 180 KiB; these are a little smaller so that 24 devices take about two minutes.
APP_SIZE = 240 * 1024
NET_SIZE = 160 * 1024
TERMINAL = ("done", "skipped", "reverted", "failed", "superseded")
# What a faulty device of the scenario must end as (state, words its reason must contain).
EXPECT = {"bad_boot": ("failed", "app core"), "no_confirm": ("reverted", "old image"),
          "net_unreadable": ("failed", "image 1")}


class Interrupted(Exception):
    pass


class DemoError(Exception):
    pass


def on_signal(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def die_with_parent():
    """In the child before exec: SIGTERM when the demo dies, even by SIGKILL."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start(cmd, **kw):
    """Daemons get their own session: Ctrl-C reaches the demo (which stops them in order),
    not them."""
    return subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent, **kw)


def stop(proc, grace=10.0):
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def api_port():
    """fotagwd's default port when it is free (so that a plain `fotactl devices` finds the
    demo), else any free one."""
    for want in (8370, 0):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", want))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
    raise DemoError("no free TCP port on 127.0.0.1")


class Out:
    """Step lines for people; `$ command` lines show what a user would type."""

    def __init__(self):
        self.t0 = time.monotonic()

    def step(self, text):
        print(f"==> {text}", flush=True)

    def cmd(self, args, tmp):
        shown = [os.path.basename(args[0])] + [a.replace(tmp + "/", "") for a in args[1:]]
        print("    $ " + " ".join(shown), flush=True)

    def line(self, text):
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)


def run(args, out, tmp, show=True):
    if show:
        out.cmd(args, tmp)
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise DemoError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return p.stdout


def binaries():
    build = os.environ.get("FGW_BUILD") or os.path.join(REPO, "build")
    b = {"fotagwd": os.environ.get("FOTAGWD") or os.path.join(build, "daemon", "fotagwd"),
         "fotactl": os.environ.get("FOTACTL") or os.path.join(build, "tools", "fotactl",
                                                                  "fotactl"),
         "sim": os.environ.get("FOTAGW_SIM") or os.path.join(build, "tests", "sim",
                                                             "fotagw-sim")}
    for name, path in b.items():
        if not os.access(path, os.X_OK):
            raise DemoError(f"{name} not found at {path}: run `make build` (or set FGW_BUILD)")
    if not shutil.which("dbus-daemon"):
        raise DemoError("dbus-daemon not found: run `make deps`")
    return b


def scenario_devices(n):
    """Per device: mode, link and fault as the scenario file sets them (later sections win)."""
    cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"),
                                   comment_prefixes=(";", "#"))
    cp.read(SCENARIO)
    base = dict(cp["default"]) if cp.has_section("default") else {}
    devs = [dict(base) for _ in range(n)]
    for sec in cp.sections():
        if not sec.startswith("device "):
            continue
        rng = sec[7:].split("-")
        lo, hi = int(rng[0]), int(rng[-1])
        for i in range(lo, min(hi, n - 1) + 1):
            devs[i].update(cp[sec])
    for d in devs:
        d["fault"] = next((f for f in EXPECT if d.get(f, "false") == "true"), None)
    return devs


class Release:
    """Keys, the two images, the bundle and the signed manifest, all with fotactl."""

    def __init__(self, fotactl, tmp, out):
        keys, srv, work = (os.path.join(tmp, d) for d in ("keys", "srv", "release"))
        for d in (keys, srv, work):
            os.makedirs(d)
        run([fotactl, "release", "keygen", "-o", f"{keys}/manifest.pem", "--public",
             f"{keys}/manifest.pub"], out, tmp)
        run([fotactl, "release", "keygen", "--type", "ecdsa-p256", "-o", f"{keys}/mcuboot.pem",
             "--public", f"{keys}/mcuboot.pub"], out, tmp)
        self.app_hash = run([fotactl, "release", "make-image", "-o", f"{work}/app.bin",
                             "--version", VERSION, "--size", str(APP_SIZE), "--seed", "1",
                             "--key", f"{keys}/mcuboot.pem"], out, tmp).strip()
        self.net_hash = run([fotactl, "release", "make-image", "-o", f"{work}/net.bin",
                             "--version", VERSION, "--size", str(NET_SIZE), "--seed", "2",
                             "--key", f"{keys}/mcuboot.pem"], out, tmp).strip()
        bundle = f"{srv}/{RELEASE_ID}.zip"
        info = json.loads(run([fotactl, "release", "make-bundle", "-o", bundle, "--app",
                               f"{work}/app.bin", "--net", f"{work}/net.bin"], out, tmp))
        with open(bundle, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != info["sha256"]:
            raise DemoError("make-bundle reported a different sha256 than the file has")
        expires = (datetime.datetime.now(datetime.timezone.utc) +
                   datetime.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        manifest = {"schema": 1, "sequence": 1, "expires": expires, "releases": [{
            "id": RELEASE_ID, "version": VERSION,
            "bundle": {"url": f"{RELEASE_ID}.zip", "sha256": info["sha256"],
                       "size": info["size"]},
            "targets": {"board": "nrf5340dk/nrf5340/cpuapp"},
            # Canaries are off: which devices become canaries depends on discovery order, and
            # a faulty canary would (rightly) halt the rollout. max_failure_rate 0.5 lets the
            # two faulty devices fail without halting it.
            "policy": {"mode": "test-confirm", "canary_percent": 0, "max_failure_rate": 0.5,
                       "max_concurrent": 8}}]}
        print(f"    (manifest.json written: release {RELEASE_ID}, version {VERSION}, "
              f"bundle {info['size']} bytes)", flush=True)
        with open(f"{srv}/manifest.json", "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        run([fotactl, "release", "sign", f"{srv}/manifest.json", "--key",
             f"{keys}/manifest.pem"], out, tmp)
        run([fotactl, "release", "inspect", bundle, "--mcuboot-key", f"{keys}/mcuboot.pub"],
            out, tmp)
        self.bundle_size = info["size"]


class World:
    """dbus-daemon, fotagw-sim and fotagwd, stopped in reverse order by close()."""

    def __init__(self, b, tmp, n, out):
        self.b, self.tmp, self.n, self.out = b, tmp, n, out
        self.bus = self.sim = self.gw = None
        self.logs = {}

    def start_bus(self):
        d = os.path.join(self.tmp, "bus")
        os.makedirs(d)
        addr = "unix:path=" + os.path.join(d, "system_bus_socket")
        self.logs["dbus"] = os.path.join(d, "dbus.log")
        self.bus = start(["dbus-daemon", "--config-file", simctl.DBUS_CONF, "--address", addr,
                          "--nofork", "--nopidfile", "--print-address"],
                         stdout=subprocess.PIPE, stderr=open(self.logs["dbus"], "w"), text=True)
        if not self.bus.stdout.readline().startswith("unix:"):
            raise DemoError("dbus-daemon did not start: " + open(self.logs["dbus"]).read())
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=addr)

    def start_sim(self, mcuboot_key):
        d = os.path.join(self.tmp, "sim")
        os.makedirs(d)
        self.udp_base = simctl.free_udp_base(self.n)
        cmd = [self.b["sim"], "--devices", str(self.n), "--state-dir", d, "--bluez",
               "--udp", f"127.0.0.1:{self.udp_base}", "--scenario", SCENARIO,
               "--mcuboot-key", mcuboot_key, "--seed", "1", "--log-level", "notice"]
        self.out.cmd(cmd[:1] + ["--devices", str(self.n), "--bluez", "--scenario",
                                "tools/demo/scenario.ini", "..."], self.tmp)
        self.logs["sim"] = os.path.join(d, "sim.log")
        ready = os.path.join(d, "ready")
        self.sim = start(cmd, stdout=open(ready, "w"), stderr=open(self.logs["sim"], "w"),
                         env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "fotagw-sim: ready" in open(ready).read():
                return
            if self.sim.poll() is not None:
                break
            time.sleep(0.05)
        raise DemoError("fotagw-sim did not start:\n" + open(self.logs["sim"]).read()[-3000:])

    def start_gw(self):
        d = os.path.join(self.tmp, "gw")
        os.makedirs(os.path.join(d, "cache"))
        self.port = api_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with open(os.path.join(d, "api-token"), "w") as f:
            f.write(hashlib.sha256(os.urandom(32)).hexdigest() + "\n")
        os.chmod(os.path.join(d, "api-token"), 0o600)
        self.conf = os.path.join(d, "fotagw.conf")
        with open(CONF_TEMPLATE) as f:
            text = Template(f.read()).substitute(tmp=self.tmp, api_port=self.port)
        with open(self.conf, "w") as f:
            f.write(text)
        run([self.b["fotagwd"], "--config", self.conf, "--check-config"], self.out, self.tmp)
        self.logs["fotagwd"] = os.path.join(d, "fotagwd.log")
        self.out.cmd([self.b["fotagwd"], "--config", self.conf], self.tmp)
        self.gw = start([self.b["fotagwd"], "--config", self.conf], stdout=subprocess.DEVNULL,
                        stderr=open(self.logs["fotagwd"], "w"), env=self.env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            self.check_gw()
            try:
                self.get("/v1/health")
                return
            except (OSError, ValueError):
                time.sleep(0.1)
        raise DemoError("fotagwd's API did not come up:\n" + self.tail("fotagwd"))

    def enroll(self, devs, fotactl):
        """The fleet list an operator would import: every device, with its own passkey where
        it requires an authenticated link. The file holds secrets: mode 0600, and the passkeys
        travel in the request body, never on a command line."""
        path = os.path.join(self.tmp, "gw", "fleet.csv")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("address,passkey,group,label\n")
            for i, d in enumerate(devs):
                pk = d.get("passkey", "") if d.get("security") == "authen" else ""
                f.write(f"C0:FF:EE:00:{i >> 8:02X}:{i & 255:02X},{pk},default,"
                        f"demo bench {i}\n")
        return run([fotactl, "--url", self.url, "--token-file",
                    os.path.join(self.tmp, "gw", "api-token"), "devices", "import", path],
                   self.out, self.tmp).strip()

    def check_gw(self):
        if self.gw and self.gw.poll() is not None:
            raise DemoError(f"fotagwd exited ({self.gw.returncode}):\n" + self.tail("fotagwd"))

    def tail(self, name, n=4000):
        try:
            return open(self.logs[name], errors="replace").read()[-n:]
        except (OSError, KeyError):
            return ""

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read() or b"{}")

    def device(self, i):
        """What device i itself says, over SMP/UDP: versions (group 64), slots, mode."""
        c = smpc.UdpClient(self.udp_base + i, timeout=3.0, ver=1)
        try:
            for attempt in range(5):
                try:
                    ver = c.request(0, 64, 0, {})["body"]
                    st = c.state()
                    mode = c.request(0, 0, 8, {"query": "mode"})["body"].get("mode")
                    break
                except smpc.SmpTimeout:
                    if attempt == 4:
                        raise DemoError(f"device {i} does not answer over SMP/UDP")
                    time.sleep(1)
        finally:
            c.close()
        s0 = smpc.slots(st).get((0, 0), {})
        pending = any(e.get("pending") for e in smpc.slots(st).values())
        return {"app": ver.get("app"), "net": ver.get("net"),
                "mode": {2: "overwrite", 3: "swap"}.get(mode, str(mode)),
                "app_hash": bytes(s0.get("hash", b"")).hex(),
                "app_confirmed": bool(s0.get("confirmed")), "pending": pending}

    def close(self):
        rc = stop(self.gw)
        stop(self.sim)
        stop(self.bus)
        return rc


class Screenshot(threading.Thread):
    """Waits until several devices upload, then photographs the status page in headless
    Chromium (what fits a 1100x760 window, after its script has refreshed it)."""

    def __init__(self, w, path, tmp, deadline):
        super().__init__(daemon=True)
        self.w, self.path, self.tmp, self.deadline = w, path, tmp, deadline
        self.error = None
        self.saved = False

    def uploading(self):
        devs = self.w.get("/v1/devices?limit=1000").get("devices", [])
        return sum(1 for d in devs if ((d.get("job") or {}).get("progress") or {})
                   .get("percent", 0) >= 20)

    def run(self):
        b = None
        try:
            while time.monotonic() < self.deadline and self.uploading() < 3:
                time.sleep(0.5)
            b = cdp.Browser(self.tmp, width=1100, height=760)
            b.navigate(self.w.url + "/")
            end = time.monotonic() + 15
            while not (b.eval("document.getElementById('live').textContent") or "") \
                    .startswith("Live:"):
                if time.monotonic() > end:
                    raise DemoError("the status page's script did not refresh it")
                time.sleep(0.2)
            b.screenshot(self.path)
            self.saved = True
        except Exception as e:  # reported by the main thread
            self.error = e
        finally:
            if b:
                b.close()


def jobs(w):
    """{address: device} for devices with a job for the current release."""
    r = w.get("/v1/devices?limit=1000")
    return {d["address"]: d for d in r.get("devices", []) if d.get("job")}


def counts_line(w, n):
    r = w.get("/v1/rollout")
    if "counts" not in r:
        return "waiting for the release to be fetched and verified"
    c = {k: v for k, v in r["counts"].items() if v and k != "idle"}
    active = sum(v for k, v in c.items() if k not in TERMINAL and k != "queued")
    parts = " ".join(f"{k} {v}" for k, v in c.items())
    return f"{sum(c.values())}/{n} devices with a job, {active} active | {parts}"


def finished(w, n):
    j = jobs(w)
    return len(j) >= n and all(d["job"]["state"] in TERMINAL for d in j.values())


def follow_plain(w, n, out, deadline, every=3.0):
    last = ""
    nxt = 0.0
    while time.monotonic() < deadline:
        w.check_gw()
        if finished(w, n):
            out.line(counts_line(w, n))
            return True
        if time.monotonic() >= nxt:
            line = counts_line(w, n)
            if line != last or time.monotonic() - nxt > 15:
                out.line(line)
                last = line
            nxt = time.monotonic() + every
        time.sleep(0.5)
    return False


def follow_watch(w, n, out, deadline, fotactl):
    """fotactl watch in the foreground, stopped (SIGTERM, it restores the screen) once every
    job has ended. If the user quits it (q) the demo goes on with plain lines."""
    watch = subprocess.Popen([fotactl, "watch", "--url", w.url, "--interval", "500"])
    done, quit_ev = threading.Event(), threading.Event()
    err = []

    def poll():
        try:
            while not quit_ev.is_set() and time.monotonic() < deadline:
                w.check_gw()
                if finished(w, n):
                    time.sleep(1.5)  # one more frame with the final counts
                    done.set()
                    break
                time.sleep(0.5)
        except Exception as e:  # reported by the main thread
            err.append(e)
        if watch.poll() is None:
            watch.send_signal(signal.SIGTERM)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        watch.wait()
    finally:
        quit_ev.set()
        if watch.poll() is None:
            watch.send_signal(signal.SIGTERM)
            watch.wait()
    t.join(10)
    if err:
        raise err[0]
    if done.is_set():
        out.line(counts_line(w, n))
        return True
    out.line("watch ended; following with plain lines")
    return follow_plain(w, n, out, deadline)


def summarize(w, rel, devs, before, after, jobs_now, n):
    rows = []
    ok_all = True
    for i in range(n):
        addr = simctl.device_address(i)
        d = jobs_now.get(addr)
        job = d["job"] if d else None
        dur = None
        if job and job.get("started_at") and job.get("finished_at"):
            dur = (job["finished_at"] - job["started_at"]) / 1000.0
        fault = devs[i]["fault"]
        a = after[i]
        state = job["state"] if job else "no job"
        reason = (job or {}).get("reason")
        if fault:
            exp_state, words = EXPECT[fault]
            ok = (state == exp_state and words in (reason or "") and
                  a["app"] == before[i]["app"] and a["app_confirmed"] and not a["pending"])
        else:
            exp_state = "done"
            ok = (state == "done" and a["app"] == VERSION and a["net"] == VERSION and
                  a["app_hash"] == rel.app_hash and a["app_confirmed"] and not a["pending"])
        ok_all &= ok
        rows.append({
            "index": i, "address": addr, "name": f"fotagw-sim-{i:04d}", "mode": a["mode"],
            "link": devs[i].get("link", "typical"), "fault": fault,
            "before": {"app": before[i]["app"], "net": before[i]["net"]},
            "after": a,
            "job": None if not job else {
                "state": job["state"], "reason": reason, "attempts": job.get("attempts"),
                "app_result": job.get("app_result"), "net_result": job.get("net_result"),
                "duration_s": dur},
            "expected": exp_state, "ok": ok})
    return rows, ok_all


def print_table(rows, rel):
    print()
    print(f"Rollout of {RELEASE_ID} (app core {VERSION}, net core {VERSION}), read back from "
          "the devices:")
    head = (f"{'device':<16} {'mode':<9} {'app core':<18} {'net core':<18} {'time':>5} "
            f"{'retries':>7}  result")
    print(head)
    print("-" * (len(head) + 28))
    for r in rows:
        b, a, j = r["before"], r["after"], r["job"] or {}
        app = f"{b['app']} → {a['app']}"
        net = f"{b['net']} → {a['net']}"
        t = f"{j['duration_s']:.0f}s" if j.get("duration_s") is not None else "-"
        retries = str(j["attempts"]) if j.get("attempts") is not None else "-"
        res = j.get("state", "no job")
        if j.get("state") == "done":
            res += f" (app {j.get('app_result')}, net {j.get('net_result')})"
        if r["fault"]:
            res += f" [faulty: {r['fault']}]"
        if not r["ok"]:
            res += f" << expected {r['expected']}"
        print(f"{r['name']:<16} {r['mode']:<9} {app:<18} {net:<18} {t:>5} {retries:>7}  {res}")
        if j.get("reason"):
            print(f"{'':<16}   reason: {j['reason']}")
    print()


def main():
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    try:
        n = int(os.environ.get("DEMO_DEVICES", "24"))
        if not 1 <= n <= 200:
            raise ValueError
    except ValueError:
        print("demo: DEMO_DEVICES must be a number from 1 to 200", file=sys.stderr)
        return 2
    ci = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
    interactive = not ci and sys.stdout.isatty() and sys.stdin.isatty()
    timeout = float(os.environ.get("DEMO_TIMEOUT", "600"))
    keep = os.environ.get("DEMO_KEEP", "") not in ("", "0")
    out = Out()
    tmp = tempfile.mkdtemp(prefix="fotagw-demo-")
    w = None
    rc = 1
    try:
        b = binaries()
        devs = scenario_devices(n)
        out.step(f"a demo key pair and a signed release {VERSION} (app + net core) in {tmp}")
        rel = Release(b["fotactl"], tmp, out)

        out.step(f"a private dbus-daemon and fotagw-sim as bluetoothd with {n} nRF5340 devices")
        w = World(b, tmp, n, out)
        w.start_bus()
        w.start_sim(os.path.join(tmp, "keys", "mcuboot.pem"))
        before = [w.device(i) for i in range(n)]
        modes = sum(1 for x in before if x["mode"] == "swap")
        faulty = [f"fotagw-sim-{i:04d} ({d['fault']})" for i, d in enumerate(devs) if d["fault"]]
        print(f"    {n} devices: {n - modes} MCUboot overwrite-only, {modes} swap; "
              f"faulty: {', '.join(faulty) or 'none'}", flush=True)

        out.step("fotagwd with the demo config (BLE through the simulated bluetoothd, "
                 f"release from file://{tmp}/srv)")
        w.start_gw()
        print(f"    REST API on {w.url}; try: fotactl --url {w.url} devices", flush=True)
        authen = [f"fotagw-sim-{i:04d}" for i, d in enumerate(devs) if d.get("security") == "authen"]
        out.step("enrol the fleet (enrollment = allowlist: a device nobody enrolled gets "
                 "nothing); " + (f"{', '.join(authen)} require(s) a passkey-authenticated "
                                 "link, their passkeys come with the enrollment"
                                 if authen else "no device requires pairing"))
        print("    " + w.enroll(devs, b["fotactl"]), flush=True)
        t0 = time.monotonic()
        deadline = t0 + timeout
        out.t0 = t0
        shot = None
        if os.environ.get("DEMO_SCREENSHOT"):
            shot = Screenshot(w, os.path.abspath(os.environ["DEMO_SCREENSHOT"]), tmp, deadline)
            shot.start()
        if interactive:
            out.step("fotactl watch (q leaves the view, the demo goes on; Ctrl-C stops it)")
            time.sleep(1.0)
            ok = follow_watch(w, n, out, deadline, b["fotactl"])
        else:
            out.step("the rollout")
            ok = follow_plain(w, n, out, deadline)
        rollout_s = time.monotonic() - t0
        if shot:
            shot.join(30)
            if shot.saved:
                print(f"    status page screenshot: {shot.path}", flush=True)
            else:
                raise DemoError(f"no screenshot of the status page: {shot.error or 'timed out'}")
        if not ok:
            print(f"demo: the rollout did not end within {timeout:.0f} s", flush=True)
        jobs_now = jobs(w)
        after = [w.device(i) for i in range(n)]
        rows, all_ok = summarize(w, rel, devs, before, after, jobs_now, n)
        print_table(rows, rel)
        done = sum(1 for r in rows if r["job"] and r["job"]["state"] == "done")
        nfaulty = sum(1 for r in rows if r["fault"])
        print(f"{done} of {n} devices updated in both cores in {rollout_s:.0f} s" +
              (f"; {nfaulty} faulty devices ended with their reason." if nfaulty else ".")
              if all_ok and ok else "demo: some devices did not end as expected (see above)")
        summary = {"release": {"id": RELEASE_ID, "version": VERSION, "app_hash": rel.app_hash,
                               "net_hash": rel.net_hash, "bundle_size": rel.bundle_size},
                   "devices_total": n, "rollout_s": round(rollout_s, 1), "finished": ok,
                   "ok": bool(ok and all_ok), "devices": rows,
                   "rollout": w.get("/v1/rollout"),
                   # what the simulated devices themselves say about pairing (their log)
                   "paired": dict(re.findall(r"event: paired, device: (\S+), level: (\w+)",
                                             w.tail("sim", 1 << 30)))}
        if os.environ.get("DEMO_SUMMARY"):
            with open(os.environ["DEMO_SUMMARY"], "w") as f:
                json.dump(summary, f, indent=1)
        rc = 0 if summary["ok"] else 1
        if rc:
            print("---- fotagwd log (tail) ----\n" + w.tail("fotagwd", 6000), flush=True)
        if os.environ.get("DEMO_STAY", "") not in ("", "0"):
            print(f"demo: fotagwd and the fleet stay up (API {w.url}, config {w.conf}); "
                  "Ctrl-C ends the demo", flush=True)
            try:
                while True:
                    w.check_gw()
                    time.sleep(1)
            except Interrupted:
                print("\ndemo: stopping everything", flush=True)
    except Interrupted as e:
        print(f"\ndemo: {e}, stopping everything", flush=True)
        rc = 130
    except DemoError as e:
        print(f"demo: {e}", file=sys.stderr, flush=True)
        if w:
            print("---- fotagwd log (tail) ----\n" + w.tail("fotagwd"), file=sys.stderr)
            print("---- simulator log (tail) ----\n" + w.tail("sim"), file=sys.stderr)
        rc = 1
    finally:
        # No second interruption in the middle of the clean-up.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if w:
            w.close()
        if keep:
            print(f"demo: kept {tmp} (logs: gw/fotagwd.log, sim/sim.log)", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())

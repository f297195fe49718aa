"""End-to-end harness for the fleet: a signed release made with fotactl and served by a real
nginx, fotagw-sim (over UDP, or as bluetoothd on a private dbus-daemon), and fotagwd with its
REST API — each in the test's own temp dir, all stopped at the end.

The outcome is checked on the simulator's own state (SMP over UDP to each device: image state
and the firmware's version group), not only on what fotagwd says.
"""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
sys.path.insert(0, os.path.join(HERE, "..", "sim"))
from nginx import Nginx, free_port  # noqa: E402
import simctl  # noqa: E402
import smpc  # noqa: E402

TOKEN = "fleet-test-token-0123456789"
TERMINAL = ("done", "skipped", "reverted", "failed", "superseded")


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print("ok:", what, flush=True)


def run(args, **kw):
    p = subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)
    if p.returncode != 0:
        raise Fail(f"{args}: rc {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p.stdout


class Release:
    """Keys, two MCUboot images (app, net), the bundle and the signed manifest."""

    def __init__(self, fotactl, tmp, srv, version="2.0.0", seq=1, canary=0, rate=0.5,
                 mode="test-confirm", rid=None, app_size=65536, net_size=32768,
                 expires="2100-01-01T00:00:00Z", allow_downgrade=None, max_concurrent=8):
        self.fotactl, self.tmp, self.srv = fotactl, tmp, srv
        self.version, self.id = version, rid or "fw-" + version
        if not os.path.exists(os.path.join(tmp, "manifest.pem")):
            run([fotactl, "release", "keygen", "-o", os.path.join(tmp, "manifest.pem"),
                 "--public", os.path.join(tmp, "manifest.pub")])
        app = os.path.join(tmp, f"app-{version}.bin")
        net = os.path.join(tmp, f"net-{version}.bin")
        run([fotactl, "release", "make-image", "-o", app, "--version", version, "--size",
             str(app_size), "--seed", "1"])
        run([fotactl, "release", "make-image", "-o", net, "--version", version, "--size",
             str(net_size), "--seed", "2"])
        self.app_hash = smpc.image_hash(open(app, "rb").read())
        self.net_hash = smpc.image_hash(open(net, "rb").read())
        bundle = os.path.join(srv, f"{self.id}.zip")
        run([fotactl, "release", "make-bundle", "-o", bundle, "--app", app, "--net", net])
        data = open(bundle, "rb").read()
        import hashlib
        m = {"schema": 1, "sequence": seq, "expires": expires, "releases": [{
            "id": self.id, "version": version,
            "bundle": {"url": f"{self.id}.zip", "sha256": hashlib.sha256(data).hexdigest(),
                       "size": len(data)},
            "targets": {"board": "nrf5340dk/nrf5340/cpuapp"},
            "policy": {"mode": mode, "canary_percent": canary, "max_failure_rate": rate,
                       "max_concurrent": max_concurrent}}]}
        if allow_downgrade is not None:
            m["releases"][0]["policy"]["allow_downgrade"] = allow_downgrade
        self.manifest = m
        self.publish()

    def publish(self, **changes):
        """(Re)writes and signs manifest.json, e.g. publish(sequence=2, expires=...)."""
        self.manifest.update(changes)
        path = os.path.join(self.srv, "manifest.json")
        with open(path, "w") as f:
            json.dump(self.manifest, f)
        run([self.fotactl, "release", "sign", path, "--key",
             os.path.join(self.tmp, "manifest.pem")])


class Gateway:
    def __init__(self, fotagwd, tmp, manifest_url, trusted, udp_devices=None, ble=False,
                 extra="", enrollment="open"):
        self.fotagwd, self.tmp = fotagwd, tmp
        self.db = os.path.join(tmp, "fotagw.db")
        self.conf = os.path.join(tmp, "fotagw.conf")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        token = os.path.join(tmp, "token")
        with open(token, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(token, 0o600)  # fotagwd refuses a token others can read
        os.makedirs(os.path.join(tmp, "cache"), exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(f"""[log]
level = info
[store]
path = {self.db}
[api]
port = {self.port}
token_file = {token}
[ble]
enabled = {"true" if ble else "false"}
filter_service = false
name_prefix = fotagw-sim-
connect_timeout_s = 15
[fleet]
# the tests about enrollment set allowlist; the others take every simulated device
enrollment = {enrollment}
udp_devices = {" ".join(udp_devices or [])}
backoff_base_s = 1
backoff_max_s = 4
reboot_timeout_s = 40
progress_flush_s = 1
netcore_version_group = 64
[upload]
first_chunk_timeout_ms = 10000
[release]
manifest_url = {manifest_url}
poll_interval_s = 10
trusted_keys = {trusted}
cache_dir = {os.path.join(tmp, "cache")}
{extra}""")
        self.proc = None
        self.log_path = os.path.join(tmp, "fotagwd.log")
        self.env = dict(os.environ)

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([self.fotagwd, "--config", self.conf], stderr=log,
                                     stdout=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Fail(f"fotagwd exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                self.get("/v1/health")
                return
            except OSError:
                time.sleep(0.1)
        raise Fail("fotagwd API did not come up")

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc

    def log(self):
        return open(self.log_path).read() if os.path.exists(self.log_path) else ""

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return json.loads(r.read())

    def health(self):
        """GET /v1/health, whatever its status (503 when degraded): (status, body)."""
        try:
            with urllib.request.urlopen(self.url + "/v1/health", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def metrics(self):
        """GET /metrics as {'name{labels}': value}."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    def post(self, path, body=b"{}"):
        req = urllib.request.Request(self.url + path, data=body, method="POST", headers={
            "Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def jobs(self):
        """Jobs of the newest release straight from SQLite (read-only, no lock held)."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(
                "SELECT address, state, reason, canary, app_result, net_result FROM jobs "
                "WHERE release_id = (SELECT id FROM releases WHERE state = 'verified' "
                "ORDER BY sequence DESC LIMIT 1) ORDER BY address").fetchall()
        finally:
            con.close()

    def wait(self, cond, what, limit):
        deadline = time.monotonic() + limit
        last = None
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise Fail(f"fotagwd died ({self.proc.returncode}) waiting for {what}:\n"
                           f"{self.log()[-4000:]}")
            try:
                last = self.jobs()
                if cond(last):
                    return last
            except sqlite3.Error:
                pass
            time.sleep(0.5)
        raise Fail(f"timed out waiting for {what}; jobs: {last}\n{self.log()[-6000:]}")

    def wait_all_terminal(self, n, limit):
        return self.wait(lambda j: len(j) == n and all(r[1] in TERMINAL for r in j),
                         f"{n} jobs to end", limit)


def device_state(port):
    """What the simulated device itself says: versions (group 64) and image state."""
    c = smpc.UdpClient(port, timeout=3.0, ver=1)
    try:
        st = c.state()
        ver = c.request(0, 64, 0, {})["body"]
        return {"slots": smpc.slots(st), "versions": ver}
    finally:
        c.close()


class World:
    """Temp dir + nginx + (bus) + simulator + gateway, torn down in reverse order."""

    def __init__(self, binaries, devices, ble=False, sim_args=(), gw_extra="",
                 enrollment="open", **rel):
        self.b = binaries
        self.tmp = tempfile.mkdtemp(prefix="fgw-fleet-")
        self.ng = Nginx(self.tmp)
        self.ng.start()
        self.bus = simctl.Bus() if ble else None
        self.sim = simctl.Sim(binaries["sim"], devices=devices, udp=True, bluez=ble,
                              bus=self.bus, args=list(sim_args))
        self.release = Release(binaries["fotactl"], self.tmp, self.ng.srv, **rel)
        udp = None if ble else [f"127.0.0.1:{self.sim.port(i)}" for i in range(devices)]
        gwdir = os.path.join(self.tmp, "gw")
        os.makedirs(gwdir)
        self.gw = Gateway(binaries["fotagwd"], gwdir, self.ng.base + "/manifest.json",
                          os.path.join(self.tmp, "manifest.pub"), udp_devices=udp, ble=ble,
                          extra=gw_extra, enrollment=enrollment)
        if ble:
            self.gw.env = dict(os.environ, **self.bus.env)
        self.devices = devices
        self.ble = ble

    def address(self, i):
        return simctl.device_address(i) if self.ble else f"udp:127.0.0.1:{self.sim.port(i)}"

    def close(self, ok):
        rc = self.gw.kill(signal.SIGTERM)
        if not ok:
            print("---- fotagwd log (tail) ----\n" + self.gw.log()[-8000:])
            print("---- simulator log (tail) ----\n" + self.sim.log()[-4000:])
        self.sim.close()
        if self.bus:
            self.bus.close()
        self.ng.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return rc

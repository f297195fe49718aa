#!/usr/bin/env python3
"""A real Prometheus scrapes fotagwd during a simulated BLE rollout (issue 20).

  test_prometheus.py FOTAGWD FOTACTL FOTAGW_SIM

fotagw-sim is bluetoothd on a private bus with 3 devices; fotagwd rolls a release out to them
while Prometheus (Debian's `prometheus`, loopback, storage in the test's temp dir) scrapes it
every second with contrib/prometheus/fotagw.rules.yml loaded. Checked:
  - every metric name the rules and contrib/grafana/fotagw.json use is on the live /metrics;
  - Prometheus loaded all the rules and they evaluate without error;
  - PromQL through its HTTP API gives the device counts the REST API gives, and saw jobs
    running during the rollout;
  - every query of the dashboard evaluates without error.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "fleet-it"))
import fleettest as ft  # noqa: E402
from fleettest import check, Fail  # noqa: E402

RULES = os.path.join(REPO, "contrib", "prometheus", "fotagw.rules.yml")
DASHBOARD = os.path.join(REPO, "contrib", "grafana", "fotagw.json")
N = 3
# A Linux gateway's default connection: a few seconds per device, several scrapes.
LINK = ["--link", "typical"]


def used_metric_names():
    """fotagw_* names in the rules and the dashboard's queries."""
    text = open(RULES).read()
    dash = json.load(open(DASHBOARD))
    exprs, variables = [], []

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "expr" and isinstance(v, str):
                    exprs.append(v)
                elif k == "definition" and isinstance(v, str):
                    variables.append(v)  # Grafana's label_values(): not PromQL
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(dash)
    names = set(re.findall(r"\bfotagw_[a-z0-9_]+", "\n".join([text] + exprs + variables)))
    return names, exprs


def live_names(metrics_text):
    """Families (# TYPE: a labelled gauge such as fotagw_job_failures{outcome,stage} has no sample
    while nothing failed) and sample names."""
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


class Prometheus:
    def __init__(self, tmp, target):
        self.dir = os.path.join(tmp, "prometheus")
        os.makedirs(self.dir)
        self.port = ft.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = os.path.join(self.dir, "prometheus.yml")
        with open(conf, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES}
scrape_configs:
  - job_name: fotagw
    static_configs:
      - targets: ["{target}"]
""")
        exe = shutil.which("prometheus")
        if not exe:
            raise Fail("prometheus is not installed (tools/deps.sh)")
        self.log_path = os.path.join(self.dir, "prometheus.log")
        self.proc = subprocess.Popen(
            [exe, f"--config.file={conf}", f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"), start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Fail(f"prometheus exited {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise Fail("prometheus did not become ready")

    def log(self):
        try:
            return open(self.log_path, errors="replace").read()
        except OSError:
            return ""

    def api(self, path, **params):
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read() or b"{}")

    def query(self, q):
        r = self.api("/api/v1/query", query=q)
        if r.get("status") != "success":
            raise Fail(f"PromQL {q!r}: {r}")
        return r["data"]["result"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for(what, cond, limit, step=0.5):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise Fail(f"timed out ({limit} s) waiting for {what}")


def run(w, tmp):
    # Prometheus first: it scrapes from fotagwd's first second, so it sees the rollout run.
    prom = Prometheus(tmp, f"127.0.0.1:{w.gw.port}")
    try:
        w.gw.start()
        wait_for("a scrape of fotagwd", lambda: prom.query('up{job="fotagw"} == 1'), 30)
        w.gw.wait_all_terminal(N, 150)
        with urllib.request.urlopen(w.gw.url + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
        used, exprs = used_metric_names()
        live = live_names(metrics)
        missing = sorted(n for n in used if n not in live)
        check(not missing, f"all {len(used)} metric names of the rules and the dashboard are "
              f"on the live /metrics (missing: {missing})")

        rules = prom.api("/api/v1/rules")["data"]["groups"]
        loaded = [r for g in rules for r in g["rules"]]
        with open(RULES) as f:
            in_file = sum(1 for line in f if line.lstrip().startswith("- alert:"))
        check(len(loaded) == in_file and in_file >= 10,
              f"Prometheus loaded {len(loaded)} rules of the {in_file} in the file")
        wait_for("every rule evaluated", lambda: all(
            r.get("health") == "ok" for g in prom.api("/api/v1/rules")["data"]["groups"]
            for r in g["rules"]), 20)
        check(True, "every rule evaluates without error")

        api = w.gw.get("/v1/rollout")["counts"]

        def counts_match():
            got = {r["metric"]["state"]: int(float(r["value"][1]))
                   for r in prom.query('fotagw_devices{job="fotagw"}')}
            return got if got == api else None
        got = wait_for("PromQL device counts to match /v1/rollout", counts_match, 20)
        check(got["done"] == N, f"PromQL: fotagw_devices{{state=\"done\"}} = {got['done']}")
        total = prom.query('sum(fotagw_devices{job="fotagw"})')
        check(int(float(total[0]["value"][1])) == N, "PromQL: sum(fotagw_devices) = devices")
        ran = prom.query('max_over_time(fotagw_jobs_active{job="fotagw"}[10m])')
        check(ran and float(ran[0]["value"][1]) > 0,
              f"Prometheus saw jobs running during the rollout ({ran[0]['value'][1]} at most)")
        firing = [a["labels"]["alertname"] for a in prom.api("/api/v1/alerts")["data"]["alerts"]
                  if a["state"] == "firing"]
        check(not firing, f"no alert fires for a healthy rollout: {firing}")

        for e in exprs:
            prom.query(e.replace("$instance", ".*"))
        check(True, f"the dashboard's {len(exprs)} queries evaluate")
    except Fail:
        print("---- prometheus log (tail) ----\n" + prom.log()[-3000:])
        raise
    finally:
        prom.close()


def main():
    fotagwd, fotactl, sim = sys.argv[1:4]
    tmp = tempfile.mkdtemp(prefix="fgw-prom-")
    w = ft.World({"fotagwd": fotagwd, "fotactl": fotactl, "sim": sim}, N, ble=True,
                 sim_args=LINK + ["--seed", "9"])
    ok = False
    try:
        run(w, tmp)
        ok = True
    except Fail as e:
        print("FAIL:", e)
    finally:
        w.close(ok)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Load on the REST API: wrk against GET /v1/devices of a fotagwd serving a seeded database of
1,000 devices on loopback. Prints one JSON line per metric (requests/s, p99 latency).

usage: bench/api-load.py FOTAGWD [--seconds N] [--connections N]

The acceptance variant (the same load while 8 simulated uploads run, uploads slowed by at most
5 %) needs the fleet wired into fotagwd; this script measures the API side alone.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "api-it"))
from apitest import Daemon, free_port, seed  # noqa: E402
from procstat import wrk  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fotagwd")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=8)
    a = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk not installed", file=sys.stderr)
        return 77
    with tempfile.TemporaryDirectory(prefix="fgw-bench-api-") as tmp:
        d = Daemon(a.fotagwd, tmp, free_port(), extra_api="max_connections = 64\n")
        seed(d.db, 1000)
        d.start()
        try:
            for name, path in (("devices_page100", "/v1/devices"),
                               ("devices_page1000", "/v1/devices?limit=1000"),
                               ("health", "/v1/health")):
                rps, p99, errors = wrk(d.url + path, a.seconds, a.connections)
                for metric, value, unit in ((f"api_{name}_rps", rps, "req/s"),
                                            (f"api_{name}_p99", p99, "ms")):
                    print(json.dumps({"metric": metric, "value": round(value, 3), "unit": unit,
                                      "connections": a.connections, "seconds": a.seconds,
                                      "non_2xx": errors}))
        finally:
            rc, _ = d.stop()
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Do two builds answer the API's reads byte for byte the same? (issue 15: the big reads moved
from a cJSON tree to a streaming writer, and clients compare the answers.)

Seeds one database (tests/api-it: 1,000 devices, jobs of release r2 in every state, events),
copies it for each build, starts each build's fotagwd on its copy in turn and fetches the same
paths. Prints one JSON line per path and exits 1 if any answer differs.

  bench/api-same-answers.py --build build --other /path/to/other/build
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "api-it"))
import apitest  # noqa: E402

PATHS = ["/v1/devices", "/v1/devices?limit=1000", "/v1/devices?state=failed,reverted",
         "/v1/devices?group=lab&limit=7", "/v1/devices?release=r1",
         "/v1/devices/" + apitest.address(9), "/v1/devices/" + apitest.address(3),
         "/v1/events", "/v1/events?limit=1000", "/v1/releases", "/v1/rollout",
         "/v1/devices/C0:00:00:00:FF:FF", "/v1/devices?limit=0"]


def answers(fotagwd, tmp, seeded):
    os.makedirs(tmp)
    shutil.copy(seeded, os.path.join(tmp, "fotagw.db"))
    d = apitest.Daemon(fotagwd, tmp, apitest.free_port())
    out = {}
    try:
        d.start()
        for p in PATHS:
            status, _, body = apitest.request(d.url, "GET", p)
            out[p] = (status, body)
    finally:
        d.stop()
        d.kill()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--other", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fgw-same-") as tmp:
        seeded = os.path.join(tmp, "seed.db")
        apitest.seed(seeded)
        mine = answers(os.path.join(os.path.abspath(a.build), "daemon", "fotagwd"),
                       os.path.join(tmp, "a"), seeded)
        other = answers(os.path.join(os.path.abspath(a.other), "daemon", "fotagwd"),
                        os.path.join(tmp, "b"), seeded)
    differ = 0
    for p in PATHS:
        same = mine[p] == other[p]
        differ += not same
        print(json.dumps({"path": p, "same": same, "status": [mine[p][0], other[p][0]],
                          "bytes": [len(mine[p][1]), len(other[p][1])],
                          "sha256": hashlib.sha256(mine[p][1]).hexdigest()[:16]}))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

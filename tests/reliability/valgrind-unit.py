#!/usr/bin/env python3
"""valgrind memcheck over every unit test (CTest label "unit") of a build without sanitizers:
an invalid access, an uninitialised value that matters, or a definite/indirect leak fails.

  valgrind-unit.py BUILD_DIR SUPPRESSIONS [NAME_REGEX]

Tests run two at a time. Exit 77 if valgrind is missing.
"""
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import time

build, supp = sys.argv[1], sys.argv[2]
only = re.compile(sys.argv[3]) if len(sys.argv) > 3 else None
vg = shutil.which("valgrind")
if not vg:
    print("SKIP: no valgrind")
    sys.exit(77)
info = json.loads(subprocess.run(["ctest", "--test-dir", build, "-L", "^unit$",
                                  "--show-only=json-v1"], capture_output=True, text=True,
                                 check=True).stdout)
tests = []
for t in info["tests"]:
    if only and not only.search(t["name"]):
        continue
    env = {}
    for p in t.get("properties", []):
        if p["name"] == "ENVIRONMENT":
            env.update(e.split("=", 1) for e in p["value"])
    tests.append((t["name"], t["command"], env))
if not tests:
    print("FAIL: no unit tests found in", build)
    sys.exit(1)


def run(name, cmd, env):
    t0 = time.monotonic()
    p = subprocess.run([vg, "--tool=memcheck", "--error-exitcode=99", "--leak-check=full",
                        "--show-leak-kinds=definite,indirect",
                        "--errors-for-leak-kinds=definite,indirect",
                        "--track-origins=no", "--trace-children=no", "--num-callers=30",
                        f"--suppressions={supp}", "--quiet"] + cmd,
                       capture_output=True, text=True, env=dict(os.environ, **env), timeout=900)
    return name, p.returncode, p.stdout + p.stderr, time.monotonic() - t0


failed = []
with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
    for name, rc, out, secs in ex.map(lambda t: run(*t), tests):
        status = "ok" if rc == 0 else f"FAILED (rc {rc})"
        print(f"{name}: {status} ({secs:.1f} s)", flush=True)
        if rc != 0:
            failed.append(name)
            print(out[-6000:])
print(f"valgrind memcheck: {len(tests) - len(failed)}/{len(tests)} unit tests clean")
sys.exit(1 if failed else 0)

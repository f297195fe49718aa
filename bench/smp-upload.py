#!/usr/bin/env python3
"""Upload goodput of fotagw-smp against fotagw-sim's link model: stop-and-wait vs pipelined.

The link: 7.5 ms connection interval, ATT MTU 498, several packets per connection event (BLE
with DLE and the NCS DFU "speedup" settings), over SMP/UDP so that only the link model limits.
The same image size is uploaded twice, with --window 1 (one request in flight, what most CLIs
do) and with the default window (from the device's buf_count), each to a fresh simulator.
Goodput counts image bytes per second while streaming, i.e. after the first chunk's answer:
that one waits for the device to erase the slot, which no client can speed up (total figures
are printed too). Capacity is the simulator's own figure for the link (--capacity).

Prints one JSON line per metric, then a summary. Not a test: no pass/fail on speed, but the exit
status is 1 if the goal (>= 85% of capacity and >= 2x stop-and-wait) is missed.

  bench/smp-upload.py --sim build/tests/sim/fotagw-sim --smp build/tools/fotagw-smp/fotagw-smp
                      [--size BYTES] [--link SPEC]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "sim"))
import simctl  # noqa: E402

LINK = "fast"  # 2M PHY, 7.5 ms, MTU 498, DLE 251, 2 ms (docs/simulator.md)


def capacity(sim_path, link):
    out = subprocess.run([sim_path, "--capacity", "--link", link], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)[0]


def upload(a, path, window):
    args = ["--link", a.link, "--set", "app_slot_size=%d" % (2 * a.size + 65536)]
    with simctl.Sim(a.sim, args=args) as sim:
        cmd = [a.smp, "--transport", "udp:127.0.0.1:%d" % sim.port(0), "--json",
               "image", "upload", path]
        if window:
            cmd += ["--window", str(window)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise SystemExit("upload failed: %s %s" % (p.stdout, p.stderr))
        return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", required=True)
    ap.add_argument("--smp", required=True)
    ap.add_argument("--mkimage", default=os.path.join(HERE, "..", "tests", "tools", "mkimage.py"))
    ap.add_argument("--size", type=int, default=1024 * 1024)
    ap.add_argument("--link", default=LINK)
    a = ap.parse_args()
    cap = capacity(a.sim, a.link)
    cap_bps = cap["capacity_bytes_per_s"]
    with tempfile.TemporaryDirectory(prefix="fotagw-bench-") as tmp:
        path = os.path.join(tmp, "img.bin")
        subprocess.run([sys.executable, a.mkimage, "-o", path, "--size", str(a.size),
                        "--version", "1.1.0"], check=True, capture_output=True)
        runs = {"window1": upload(a, path, 1), "default": upload(a, path, 0)}

    def metric(name, value, unit, **extra):
        print(json.dumps(dict(metric=name, value=round(value, 3), unit=unit, **extra)))

    metric("smp_upload_link_capacity", cap_bps / 1024, "KiB/s", link=a.link,
           chunk_bytes=cap["chunk_bytes"], buf_size=cap["buf_size"], buf_count=cap["buf_count"])
    good = {}
    for name, r in runs.items():
        good[name] = r["stream_kib_per_s"]
        metric("smp_upload_goodput_" + name, r["stream_kib_per_s"], "KiB/s",
               window=r["window"], bytes=r["bytes"], chunks=r["chunks"],
               packet_size=r["packet_size"], retransmissions=r["retransmissions"],
               total_kib_per_s=round(r["kib_per_s"], 3), first_chunk_ms=r["first_ms"],
               seconds=r["seconds"])
        metric("smp_upload_capacity_ratio_" + name, r["stream_kib_per_s"] * 1024 / cap_bps, "ratio")
    speedup = good["default"] / good["window1"]
    metric("smp_upload_speedup_vs_stop_and_wait", speedup, "ratio")
    ratio = good["default"] * 1024 / cap_bps
    ok = ratio >= 0.85 and speedup >= 2.0
    print("capacity %.1f KiB/s; stop-and-wait %.1f KiB/s (%.0f%%); pipelined (window %d) %.1f "
          "KiB/s (%.0f%%); speedup %.2fx; goal %s" %
          (cap_bps / 1024, good["window1"], 100 * good["window1"] * 1024 / cap_bps,
           runs["default"]["window"], good["default"], 100 * ratio, speedup,
           "met" if ok else "MISSED"), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

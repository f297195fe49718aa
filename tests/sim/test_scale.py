#!/usr/bin/env python3
"""200 devices in one simulator on one bus: start-up time, memory, discovery of all of them over
D-Bus, every UDP port answering. Figures are printed; the checks are counts and memory."""
import os
import time

import simtest
from simtest import QUICK, Central, check, eq
import simctl
import smpc

N = 200


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        st = dict(line.split(":", 1) for line in f if ":" in line)
    return int(st["VmRSS"].split()[0]), int(st["VmHWM"].split()[0])


def t_200_devices(ctx):
    with simctl.Bus() as bus:
        t0 = time.monotonic()
        sim = ctx.start(N, QUICK, bluez=True, bus=bus)
        with sim:
            t_ready = time.monotonic() - t0
            rss, hwm = rss_kb(sim.proc.pid)
            with Central(ctx.blectl, bus) as c:
                c.ok("start-discovery")
                n, ms = c.ok("wait-devices %d 20000" % N).split()
                eq(int(n), N, "all devices discovered")
            ok = 0
            for i in range(N):
                cl = smpc.UdpClient(sim.port(i), timeout=2)
                try:
                    if cl.echo("x") == {"r": "x"}:
                        ok += 1
                finally:
                    cl.close()
            eq(ok, N, "every UDP port answers")
            rss2, hwm2 = rss_kb(sim.proc.pid)
            inodes = {}
            for dp, _, fs in os.walk(sim.state_dir):
                for f in fs:
                    st = os.stat(os.path.join(dp, f))
                    inodes[st.st_ino] = st.st_blocks * 512
            disk = sum(inodes.values())
            t1 = time.monotonic()
            sim2 = ctx.start(N, QUICK, bluez=False, state_dir=ctx.path("udp-only"))
            t_ready_udp = time.monotonic() - t1
            sim2.close()
        print("  %d devices: ready in %.2f s (bluez+udp, first start), %.2f s (udp only); "
              "RSS %d kB at start, %d kB after discovery+echo (peak %d kB, %.1f kB/device); "
              "all discovered in %s ms; state dir %d kB (slot files hard-linked)" %
              (N, t_ready, t_ready_udp, rss, rss2, hwm2, hwm2 / N, ms, disk // 1024))
        check(hwm2 < 64 * 1024, "peak RSS under 64 MB (%d kB)" % hwm2)


if __name__ == "__main__":
    simtest.run([t_200_devices])

"""What bench/run.py reads of a running process: wrk's answer, resident memory split by kind
(/proc smaps), the loop thread's CPU and queue time (schedstat), and time to READY=1."""
import os
import re
import signal
import socket
import subprocess
import time


def wrk(url, seconds=3, connections=8):
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s",
                          "--latency", url], capture_output=True, text=True, check=True,
                         timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p99, int(errors.group(1)) if errors else 0


def rss_split_kib(pid):
    """Resident memory now (/proc/PID/smaps_rollup, smaps): anonymous and file-backed, and
    the heap's, the shared libraries' and the release's memfd images' parts."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Rss", "Anonymous", "Pss"):
                out[k.lower() + "_kib"] = int(v.split()[0])
    out["file_kib"] = out.get("rss_kib", 0) - out.get("anonymous_kib", 0)
    heap, libs, images, name = 0, 0, 0, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                # the path, without the " (deleted)" a memfd's name carries
                name = line.split()[5] if len(line.split()) >= 6 else ""
            elif line.startswith("Rss:"):
                kib = int(line.split()[1])
                if name == "[heap]":
                    heap += kib
                elif re.search(r"\.so(\.[0-9.]+)?$", name):
                    libs += kib
                elif name.startswith("/memfd:"):
                    images += kib
    out["heap_kib"] = heap
    out["shared_libraries_kib"] = libs
    out["memfd_images_kib"] = images
    return out


def sched_ms(pid):
    """fotagwd's main (loop) thread so far: ms on a CPU, and ms runnable but waiting for one
    (/proc schedstat). The first is our work; the second, the host's queue."""
    with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
        run_ns, wait_ns, _ = (int(x) for x in f.read().split())
    return run_ns / 1e6, wait_ns / 1e6


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def time_to_ready(fotagwd, conf, tmp):
    """exec → READY=1 on a NOTIFY_SOCKET of our own, in ms, and sched_ms() at READY; then
    SIGTERM."""
    path = os.path.join(tmp, "notify.sock")
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(10)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    t0 = time.monotonic()
    p = subprocess.Popen([fotagwd, "--config", conf], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        while True:
            msg = s.recv(4096).decode(errors="replace")
            if "READY=1" in msg.split("\n"):
                ms = (time.monotonic() - t0) * 1000.0
                cpu = sched_ms(p.pid)
                break
    finally:
        s.close()
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return ms, cpu[0], cpu[1]

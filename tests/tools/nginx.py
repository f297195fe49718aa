"""A real nginx for tests: loopback port, everything (config, logs, pid, temp paths) under
the test's own temp dir, no daemonizing, killed by the test.

  ng = Nginx(tmp); ng.start(); ... files under ng.srv, URLs under ng.base ...; ng.kill()

/slow/ is served at 1 KiB/s and /throttle/ at 256 KiB/s, for timeout and resume tests.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Nginx:
    def __init__(self, tmp):
        self.tmp = tmp
        self.srv = os.path.join(tmp, "srv")
        os.makedirs(self.srv, exist_ok=True)
        for d in ("slow", "throttle"):
            os.makedirs(os.path.join(self.srv, d), exist_ok=True)
        self.port = free_port()
        self.proc = None
        conf = f"""
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {tmp}/access.log;
  client_body_temp_path {tmp}/t-body;
  proxy_temp_path {tmp}/t-proxy;
  fastcgi_temp_path {tmp}/t-fastcgi;
  uwsgi_temp_path {tmp}/t-uwsgi;
  scgi_temp_path {tmp}/t-scgi;
  default_type application/octet-stream;
  types {{ application/json json; application/zip zip; }}
  server {{
    listen 127.0.0.1:{self.port};
    root {self.srv};
    location /slow/ {{ limit_rate 1k; }}
    location /throttle/ {{ limit_rate 256k; }}
  }}
}}
"""
        with open(os.path.join(tmp, "nginx.conf"), "w") as f:
            f.write(conf)
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self):
        self.proc = subprocess.Popen([NGINX, "-p", self.tmp, "-c", os.path.join(self.tmp, "nginx.conf"),
                                      "-e", os.path.join(self.tmp, "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("FAIL: nginx exited:\n" + open(os.path.join(self.tmp, "error.log")).read())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("FAIL: nginx did not listen")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.kill()

    def access_log(self):
        p = os.path.join(self.tmp, "access.log")
        return open(p).read() if os.path.exists(p) else ""

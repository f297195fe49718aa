"""A real nginx for tests: loopback port, everything (config, logs, pid, temp paths) under
the test's own temp dir, no daemonizing, killed by the test.

  ng = Nginx(tmp); ng.start(); ... files under ng.srv, URLs under ng.base ...; ng.kill()

/slow/ is served at 1 KiB/s and /throttle/ at 256 KiB/s, for timeout and resume tests.
Nginx(tmp, tls=True) adds an https server (ng.tls_base, its certificate in ng.ca).
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
    def __init__(self, tmp, tls=False):
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
{self._tls_server() if tls else ""}
}}
"""
        with open(os.path.join(tmp, "nginx.conf"), "w") as f:
            f.write(conf)
        self.base = f"http://127.0.0.1:{self.port}"
        self.tls_base = f"https://127.0.0.1:{self.tls_port}" if tls else None

    def _tls_server(self):
        """A TLS server on a second port with a fresh self-signed certificate (self.ca), the
        same files, and two redirects: /to-http/X to the plain server, /to-https/X to itself."""
        self.tls_port = free_port()
        self.ca = os.path.join(self.tmp, "tls-cert.pem")
        key = os.path.join(self.tmp, "tls-key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", self.ca,
                        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        return f"""  server {{
    listen 127.0.0.1:{self.tls_port} ssl;
    ssl_certificate {self.ca};
    ssl_certificate_key {key};
    root {self.srv};
    location /to-http/ {{ rewrite ^/to-http/(.*)$ http://127.0.0.1:{self.port}/$1 redirect; }}
    location /to-https/ {{
      rewrite ^/to-https/(.*)$ https://127.0.0.1:{self.tls_port}/$1 redirect;
    }}
  }}"""

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

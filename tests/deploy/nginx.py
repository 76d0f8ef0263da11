"""Run deploy/nginx/roomlog.conf for real: in a temporary prefix, on free ports, as the
user who runs the tests (no root privileges needed, nothing of the machine's nginx
touched). ``python -m tests.deploy.nginx`` runs ``nginx -t`` on it (CI)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.e2e.support import ROOT

SITE = ROOT / "deploy" / "nginx" / "roomlog.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def site_config(listen: int, upstreams: list[int], logs: Path) -> str:
    """The example site with its listen port, upstream servers and log directory
    replaced: everything else as shipped."""
    text = SITE.read_text()
    text, listens = re.subn(r"(?m)^(\s*)listen 80;", rf"\1listen 127.0.0.1:{listen};", text)
    servers = "".join(f"    server 127.0.0.1:{port};\n" for port in upstreams)
    text, blocks = re.subn(r"(?m)(?:^\s*server 127\.0\.0\.1:\d+;\n)+", servers, text)
    text, paths = re.subn(r"/var/log/nginx/", f"{logs}/", text)
    assert (listens, blocks, paths) == (1, 1, 1), "the example's shape changed: update me"
    return text


def write_config(prefix: Path, listen: int, upstreams: list[int]) -> Path:
    """A main nginx.conf in ``prefix`` that includes the site; its path."""
    for name in ("logs", "tmp"):
        (prefix / name).mkdir(parents=True, exist_ok=True)
    (prefix / "roomlog.conf").write_text(site_config(listen, upstreams, prefix / "logs"))
    conf = prefix / "nginx.conf"
    tmp = prefix / "tmp"
    conf.write_text(f"""
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {prefix}/roomlog.conf;
}}
""")
    return conf


def check(conf: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on ``conf``."""
    return subprocess.run([NGINX, "-t", "-p", str(conf.parent), "-e", "stderr", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30, check=False)


class Nginx:
    """nginx in the foreground, serving ``conf``."""

    def __init__(self, conf: Path) -> None:
        self.conf = conf
        self.proc = subprocess.Popen([NGINX, "-p", str(conf.parent), "-e", "stderr", "-c",
                                      str(conf)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)

    def wait_listening(self, port: int, timeout: float = 15.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"nginx not listening in {timeout}s: {self.output()}")

    def output(self) -> str:
        log = self.conf.parent / "logs" / "error.log"
        return log.read_text() if log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as where:
        done = check(write_config(Path(where), 8080, [8001, 8002]))
        sys.stdout.write(done.stdout + done.stderr)
        sys.exit(done.returncode)

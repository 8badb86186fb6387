"""nginx running the shipped ``conf/nginx.conf`` in a private prefix.

``conf/nginx.conf`` is an http-context file (Debian: ``/etc/nginx/conf.d/``). The
test copy differs from it in exactly two lines, the addresses: ``listen`` and
the ``upstream``'s ``server`` — and, for the one test that must outlast it,
``proxy_read_timeout``'s value, lowered as that test lowers ``WEBSOCKET_PING_SECS``. It is included by a small main file standing in
for Debian's ``/etc/nginx/nginx.conf``, which keeps pid, logs and temporary
files inside the prefix, and turns gzip on for SSE and JSON at the http level,
as a careless main file might, to show the site file keeps streams uncompressed.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from proxy.devtools import ROOT, free_port, wait_http
from tests.deploy.tools import binary, render, stop_group, tail

SITE = ROOT / "conf" / "nginx.conf"
SHIPPED_LISTEN = "    listen 80;\n"
SHIPPED_UPSTREAM = "    server 127.0.0.1:8282;\n"
SHIPPED_READ_TIMEOUT = "        proxy_read_timeout 650s;\n"

MAIN = """\
pid nginx.pid;
error_log logs/error.log info;
events {
    worker_connections 256;
}
http {
    access_log logs/access.log;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    gzip on;
    gzip_types text/event-stream application/json;
    include site.conf;
}
"""


def render_site(listen_port: int, upstream_port: int, read_timeout: str | None = None) -> str:
    text = SITE.read_text()
    text = render(text, SHIPPED_LISTEN, f"    listen 127.0.0.1:{listen_port};\n")
    if read_timeout is not None:
        text = render(text, SHIPPED_READ_TIMEOUT, f"        proxy_read_timeout {read_timeout};\n")
    return render(text, SHIPPED_UPSTREAM, f"    server 127.0.0.1:{upstream_port};\n")


def make_prefix(site_text: str) -> Path:
    """A prefix directory with the main file, the site file, and logs/ and tmp/.

    Not under pytest's tmp_path: nginx's workers run as ``nobody`` when started as
    root and must reach tmp/, so the prefix is a world-traversable directory.
    """
    prefix = Path(tempfile.mkdtemp(prefix="nginx-"))
    os.chmod(prefix, 0o755)
    (prefix / "logs").mkdir()
    (prefix / "tmp").mkdir()
    (prefix / "nginx.conf").write_text(MAIN)
    (prefix / "site.conf").write_text(site_text)
    return prefix


def check(prefix: Path) -> subprocess.CompletedProcess:
    """``nginx -t`` on the prefix's main file."""
    return subprocess.run(
        [binary("nginx"), "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"],
        capture_output=True, text=True, timeout=30,
    )


class Nginx:
    """A real nginx in the foreground (``daemon off``) in front of one proxy instance."""

    def __init__(self, upstream_port: int, read_timeout: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prefix = make_prefix(render_site(self.port, upstream_port, read_timeout))
        self.proc = subprocess.Popen(
            [binary("nginx"), "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"),
             "-e", "logs/error.log", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            wait_http(self.url + "/health", self.proc)
        except BaseException:
            self.stop()
            raise

    def error_log(self) -> str:
        return tail(self.prefix / "logs" / "error.log")

    def stop(self) -> None:
        # SIGQUIT: nginx's graceful shutdown.
        stop_group(self.proc, signal.SIGQUIT)
        shutil.rmtree(self.prefix, ignore_errors=True)

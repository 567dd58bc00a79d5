"""A real nginx serving a directory on loopback, over HTTP or HTTPS with a test CA: the HTTP(S)
origin of the artifact store tests and benchmarks.

    with Nginx(tmp_path / "www", tmp_path / "nginx") as origin:   # .url: http://127.0.0.1:P/
        ...
    with Nginx(root, work, tls=True) as origin:                   # .url: https://..., .ca_path

nginx runs in the foreground (``daemon off``) with a generated config, its pid, logs and temp
files under ``work``; ``stop()`` ends it (a download cut mid-way), ``start()`` brings it back on
the same port. Debian's nginx lives in /usr/sbin; .ci/run installs nginx-light when missing.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_sdk.broker import pki
from testing.servers import HOST, PortTaken, ServerProcess, accepts, executable

START_TIMEOUT_S = 10.0


def nginx_executable() -> str:
    return executable("nginx", "apt-get install nginx-light")


class Nginx(ServerProcess):
    def __init__(
        self, root: Path, work: Path, *, tls: bool = False, keepalive_requests: int = 1000
    ) -> None:
        self.root = root
        self.work = work
        self.tls = tls
        self.keepalive_requests = keepalive_requests
        self.port = 0
        self.ca: pki.Issued | None = None
        self.ca_path: Path | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{HOST}:{self.port}/"

    def _config(self) -> Path:
        self.work.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        listen = f"{HOST}:{self.port}"
        tls = ""
        if self.tls:
            if self.ca is None:
                self.ca = pki.create_ca("edge-sdk test store CA")
                self.ca_path = self.work / "ca.pem"
                self.ca_path.write_bytes(self.ca.cert_pem)
                pki.write_issued(
                    pki.issue_server(self.ca, [HOST, "localhost"]),
                    self.work / "server.pem",
                    self.work / "server.key",
                )
            listen += " ssl"
            tls = (
                f"ssl_certificate {self.work / 'server.pem'};\n"
                f"        ssl_certificate_key {self.work / 'server.key'};\n"
            )
        temp = self.work / "temp"
        temp.mkdir(exist_ok=True)
        conf = self.work / "nginx.conf"
        conf.write_text(
            f"""worker_processes 1;
pid {self.work / "nginx.pid"};
error_log {self.work / "error.log"} info;
events {{ worker_connections 1024; }}
http {{
    # The connection serial first: tests count the connections a client kept alive.
    log_format edge '$connection $request_uri $status $body_bytes_sent';
    access_log {self.work / "access.log"} edge;
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    default_type application/octet-stream;
    keepalive_requests {self.keepalive_requests};
    sendfile on;
    server {{
        listen {listen};
        {tls}
        root {self.root};
        location / {{ try_files $uri =404; }}
    }}
}}
"""
        )
        return conf

    @property
    def _output_path(self) -> Path:
        return self.work / "nginx.out"

    def start(self) -> None:
        """Start nginx and wait until its port accepts connections; a first start picks a free
        port, a later one (``restart()``) keeps it."""

        def take(port: int, _attempt: int) -> None:
            self.port = port

        self._launch_on_a_free_port(self.port == 0, take, self._launch)

    def _launch(self) -> None:
        conf = self._config()
        user = ["-g", "daemon off; user root;"] if os.geteuid() == 0 else ["-g", "daemon off;"]
        error_log = self.work / "error.log"
        self._spawn(
            [nginx_executable(), "-p", str(self.work), "-e", str(error_log), "-c", str(conf), *user]
        )
        if self._wait_ready(lambda: accepts(self.port), START_TIMEOUT_S):
            return
        self.stop()
        log = error_log.read_text(errors="replace")[-2000:]
        if "Address already in use" in log:
            raise PortTaken(log)
        raise RuntimeError(f"nginx did not start on {HOST}:{self.port}:\n{log}")

    def requests(self) -> list[tuple[int, str, int]]:
        """(connection serial, path, status) of every request served so far."""
        path = self.work / "access.log"
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            conn, uri, status, _ = line.split(" ")
            rows.append((int(conn), uri, int(status)))
        return rows

"""A real Mosquitto broker for tests: own config, own loopback port, own files.

Tests never talk to whatever broker may already listen on 127.0.0.1:1883 (a development machine
often runs one as a system service); each ``Broker`` picks a free port, writes its config, data
and log under its work directory, and is gone when the test ends.

Mosquitto facts this module depends on (checked against Mosquitto 2.0.11):

* Started as root, Mosquitto 2 switches to the ``mosquitto`` user right after reading its config,
  *before* it opens the log file, the TLS keys or the persistence database. pytest's temporary
  directories are root-owned 0700, so that user can read none of it: the broker then runs on
  with no log, fails the TLS listener, and cannot save retained messages. ``user root`` in the
  config makes it keep its privileges (it prints a warning to stderr and carries on).
* Persistence is written on SIGTERM, not as messages arrive (``autosave_interval`` defaults to
  30 minutes), so ``stop()`` must terminate it gracefully for ``restart()`` to keep retained
  messages.
* Errors before the config is loaded (bad option, unreadable log file) only reach stderr, so
  the broker logs to stderr and this module sends stderr to ``mosquitto.log``.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge_sdk.broker import pki

# HOST, free_port and terminate are re-exported ("as"): tests import them from here.
from testing.servers import HOST as HOST
from testing.servers import PortTaken, ServerProcess, accepts, executable
from testing.servers import free_port as free_port
from testing.servers import terminate as terminate

START_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
_client_ids = itertools.count(1)


class BrokerRefused(ConnectionError):
    """The broker did not accept an MQTT connection: TLS failed, or CONNACK was not success."""


def mosquitto_executable() -> str:
    return executable("mosquitto", "install it (apt-get install mosquitto)")


class MosquittoProcess(ServerProcess):
    """What every test broker shares once it runs (testing/servers.py), and ``close()``
    disconnects the clients it handed out first. Subclasses set ``_clients`` and implement
    ``start()``; ``_output_path`` is where Mosquitto's own output goes.
    """

    _clients: list[mqtt.Client]

    def close(self) -> None:
        """Disconnect every client this broker handed out, then stop the broker."""
        clients, self._clients = self._clients, []
        for client in clients:
            client.disconnect()
            client.loop_stop()
        self.stop()


class Broker(MosquittoProcess):
    """One Mosquitto process; plain (anonymous) or mutual TLS (the client CN is the username).

    On a plain broker ``client(identity)`` sends the identity as the MQTT username, so ACL
    patterns with ``%u`` behave as they do on a TLS broker.
    """

    host = HOST

    def __init__(
        self,
        work_dir: Path,
        tls: bool = False,
        *,
        acl: str | None = None,
        extra_config: Sequence[str] = (),
    ) -> None:
        self.work_dir = work_dir
        self.tls = tls
        self.acl = acl
        self.extra_config = tuple(extra_config)
        self.config_path = work_dir / "mosquitto.conf"
        self.log_path = work_dir / "mosquitto.log"
        self.data_dir = work_dir / "data"
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._clients: list[mqtt.Client] = []
        self._client_certs: dict[str, tuple[Path, Path]] = {}
        self._tls_dir = work_dir / "tls"
        self._ca = self._make_server_pki() if tls else None

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the broker has no port until start() is called")
        return self._port

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def ca(self) -> pki.Issued:
        """The CA that signed the broker's certificate and every ``client_cert``."""
        if self._ca is None:
            raise RuntimeError("a plain broker has no CA; construct it with tls=True")
        return self._ca

    @property
    def ca_path(self) -> Path:
        """The CA certificate (PEM) a client needs to trust the broker."""
        if not self.tls:
            raise RuntimeError("a plain broker has no CA; construct it with tls=True")
        return self._tls_dir / "ca.pem"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the broker and wait until its port accepts connections.

        The first start picks a free port; later starts (``restart()``) reuse it so clients
        and saved URLs stay valid.
        """
        if self.running:
            raise RuntimeError(f"the broker on port {self.port} is already running")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)

        def take(port: int, _attempt: int) -> None:
            self._port = port

        self._launch_on_a_free_port(self._port is None, take, self._launch)

    @property
    def _output_path(self) -> Path:
        return self.log_path

    # -- clients ---------------------------------------------------------------------------

    def client_cert(self, identity: str) -> tuple[Path, Path]:
        """(certificate, key) paths of a client certificate whose CN is ``identity``."""
        cached = self._client_certs.get(identity)
        if cached is not None:
            return cached
        directory = self._tls_dir / "clients"
        directory.mkdir(parents=True, exist_ok=True)
        # The index keeps two identities that sanitize to the same name apart.
        stem = f"{len(self._client_certs)}-{re.sub(r'[^A-Za-z0-9._-]', '_', identity)}"
        paths = (directory / f"{stem}.pem", directory / f"{stem}.key")
        pki.write_issued(pki.issue_client(self.ca, identity), *paths)
        self._client_certs[identity] = paths
        return paths

    def client(
        self,
        identity: str | None = None,
        *,
        client_id: str | None = None,
        cert: tuple[Path, Path] | None = None,
    ) -> mqtt.Client:
        """A connected MQTT v5 client with its network loop running.

        On a TLS broker ``identity`` picks the client certificate (issued on first use);
        ``identity=None`` connects with no certificate at all, and ``cert`` overrides both
        (a certificate from another CA, say). Raises ``BrokerRefused`` unless the broker
        answers CONNACK success within 10 s.
        """
        if self.tls and cert is None and identity is not None:
            cert = self.client_cert(identity)
        client = connect_client(
            self.host,
            self.port,
            identity,
            ca_path=self.ca_path if self.tls else None,
            cert=cert,
            client_id=client_id,
            log_path=self.log_path,
        )
        self._clients.append(client)
        return client

    # -- internals -------------------------------------------------------------------------

    def _make_server_pki(self) -> pki.Issued:
        self._tls_dir.mkdir(parents=True, exist_ok=True)
        ca = pki.create_ca("edge-sdk test broker CA")
        (self._tls_dir / "ca.pem").write_bytes(ca.cert_pem)
        server = pki.issue_server(ca, [HOST, "localhost"])
        pki.write_issued(server, self._tls_dir / "server.pem", self._tls_dir / "server.key")
        return ca

    def _config(self) -> str:
        lines = [
            f"# written by {__name__} for one test run",
            "per_listener_settings false",
            "persistence true",
            # The trailing slash matters to Mosquitto 1.x, which appends the file name as is.
            f"persistence_location {self.data_dir}/",
            "log_dest stderr",
            "log_type all",
            "connection_messages true",
            # Without it Nagle holds a retained message back behind its SUBACK until the
            # client's delayed ACK (~40 ms): each of the agent's retained reads would wait for it.
            "set_tcp_nodelay true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # see the module docstring
        if self.acl is not None:
            acl_path = self.work_dir / "acl"
            acl_path.write_text(self.acl if self.acl.endswith("\n") else self.acl + "\n")
            lines.append(f"acl_file {acl_path}")
        if self.tls:
            lines.append("allow_anonymous false")
        else:
            lines.append("allow_anonymous true")
        # Listener options (TLS) must come after the listener line they belong to.
        lines.append(f"listener {self.port} {HOST}")
        if self.tls:
            lines += [
                f"cafile {self._tls_dir / 'ca.pem'}",
                f"certfile {self._tls_dir / 'server.pem'}",
                f"keyfile {self._tls_dir / 'server.key'}",
                "require_certificate true",
                "use_identity_as_username true",
            ]
        lines += self.extra_config
        return "\n".join(lines) + "\n"

    def _launch(self) -> None:
        self.config_path.write_text(self._config())
        self._proc, self._log = launch(self.config_path, self.log_path, self.port, self.work_dir)


def launch(
    config_path: Path, log_path: Path, port: int, cwd: Path
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Start ``mosquitto -c config_path`` with its stdout and stderr appended to ``log_path``,
    and wait until it logs "running" and accepts connections on ``port``.

    The caller owns the returned process and log handle (``terminate`` ends both). On failure
    the process is already gone; ``PortTaken`` says another process had the port.
    """
    log = log_path.open("ab")
    started_at = log.tell()
    proc = subprocess.Popen(
        [mosquitto_executable(), "-c", str(config_path)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = _read_from(log_path, started_at)
            terminate(proc, log)
            if "Address already in use" in tail:
                raise PortTaken(tail)
            raise RuntimeError(f"mosquitto exited at start; its log:\n{tail}")
        # "running" is logged once every listener is open; the port test alone could be
        # answered by some other process that took the port first.
        if " running" in _read_from(log_path, started_at) and accepts(port):
            return proc, log
        time.sleep(0.05)
    tail = _read_from(log_path, started_at)
    terminate(proc, log)
    raise RuntimeError(
        f"mosquitto did not accept connections on port {port} within "
        f"{START_TIMEOUT_S:.0f} s; its log:\n{tail}"
    )


def connect_client(
    host: str,
    port: int,
    identity: str | None,
    *,
    ca_path: Path | None,
    cert: tuple[Path, Path] | None = None,
    client_id: str | None = None,
    log_path: Path | None = None,
) -> mqtt.Client:
    """A connected MQTT v5 client with its network loop running (see ``Broker.client``).

    With ``ca_path`` it connects over TLS, presenting ``cert`` if given; without, it sends
    ``identity`` as the username. Raises ``BrokerRefused`` unless CONNACK success arrives.
    """
    if client_id is None:
        client_id = f"test-{identity or 'anonymous'}-{next(_client_ids)}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if ca_path is not None:
        certfile, keyfile = (str(cert[0]), str(cert[1])) if cert else (None, None)
        client.tls_set(ca_certs=str(ca_path), certfile=certfile, keyfile=keyfile)
    elif identity is not None:
        client.username_pw_set(identity)

    answered = threading.Event()
    outcome: list[ReasonCode] = []

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        outcome.append(reason)
        answered.set()

    def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        # With TLS 1.3 the client finishes its handshake before the broker has checked
        # the client's certificate, so a rejected certificate shows up here, as the
        # connection closing before any CONNACK, not as an error from connect().
        if not answered.is_set():
            outcome.append(reason)
            answered.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    scheme = "mqtts" if ca_path is not None else "mqtt"
    where = f"{scheme}://{host}:{port} as {identity or 'no identity'}"
    try:
        client.connect(host, port, keepalive=30)
    except OSError as e:
        raise BrokerRefused(f"{where}: {e}") from e
    client.loop_start()
    if not answered.wait(CONNECT_TIMEOUT_S):
        client.loop_stop()
        raise BrokerRefused(f"{where}: no CONNACK within {CONNECT_TIMEOUT_S:.0f} s")
    reason = outcome[0]
    if reason.is_failure or reason.packetType != PacketTypes.CONNACK:
        client.disconnect()
        client.loop_stop()
        if reason.packetType == PacketTypes.CONNACK:
            raise BrokerRefused(f"{where}: CONNACK {reason}")
        raise BrokerRefused(
            f"{where}: connection closed before CONNACK ({reason}); why is in {log_path}"
        )
    # The test owns the callbacks from here on.
    client.on_connect = None
    client.on_disconnect = None
    return client


def _read_from(path: Path, offset: int) -> str:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")

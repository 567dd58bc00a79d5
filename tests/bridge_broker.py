"""Two Mosquitto brokers bridged together, the stand-in for a clustered broker: the *core* is
what ``edge-sdk broker init`` wrote (the operator's broker, the fleet's ACL), the *edge* is a
second Mosquitto that devices dial, bridged to the core's device listener with Mosquitto's own
bridge settings over mutual TLS.

The edge serves the same device listener as the core (the fleet CA, the server certificate, the
CRL, the same ACL: a device's rights are the same wherever it connects). Its bridge carries the
topic tree in the directions it flows: ``repo/#`` and ``desired/#`` in (the operator publishes
them on the core), ``devices/#`` out (status, presence, events). The bridge logs in with a
client certificate of its own (CN ``BRIDGE_CN``), which the core's ACL lets read the fleet's
repository and desired state and write device subtrees, nothing else.

docs/topologies.md shows these very settings.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO

import paho.mqtt.client as mqtt

from edge_sdk.broker import pki
from edge_sdk.broker.settings import MAX_PACKET_SIZE, MAX_QUEUED_MESSAGES
from testing.fleet_broker import FleetBroker
from testing.mosquitto import HOST, MosquittoProcess, connect_client, launch

BRIDGE_CN = "bridge-edge-1"


def bridge_acl(root: str, bridge: str = BRIDGE_CN) -> str:
    """What the core's ACL adds for the bridge's identity."""
    return (
        f"\n# The edge broker's bridge: brings the repository and desired state to the edge,\n"
        f"# takes device reports to the core.\n"
        f"user {bridge}\n"
        f"topic read {root}/repo/#\n"
        f"topic read {root}/desired/#\n"
        f"topic readwrite {root}/devices/#\n"
    )


def edge_conf(
    core_dir: Path,
    edge_dir: Path,
    *,
    port: int,
    core_port: int,
    root: str,
    run_as: str,
    bridge_cert: Path,
    bridge_key: Path,
) -> str:
    """mosquitto.conf of the edge broker: the core's device listener, and the bridge."""
    return (
        "\n".join(
            [
                "per_listener_settings false",
                f"user {run_as}",
                "allow_anonymous false",
                f"acl_file {core_dir / 'acl'}",
                "persistence true",
                f"persistence_location {edge_dir / 'data'}/",
                f"max_packet_size {MAX_PACKET_SIZE}",
                f"max_queued_messages {MAX_QUEUED_MESSAGES}",
                "set_tcp_nodelay true",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "connection_messages true",
                f"listener {port} {HOST}",
                f"cafile {core_dir / 'ca.pem'}",
                f"crlfile {core_dir / 'crl.pem'}",
                f"certfile {core_dir / 'server.pem'}",
                f"keyfile {core_dir / 'server.key'}",
                "tls_version tlsv1.2",
                "require_certificate true",
                "use_identity_as_username true",
                "use_username_as_clientid true",
                "",
                "# The bridge to the core broker's device listener, mutual TLS.",
                "connection core",
                f"address {HOST}:{core_port}",
                # Mosquitto to Mosquitto: the remote keeps the retain flag as published, so
                # retained messages (the repository, desired state, status) stay retained.
                "try_private true",
                "cleansession false",
                "notifications false",
                "restart_timeout 1 5",
                f"bridge_cafile {core_dir / 'ca.pem'}",
                f"bridge_certfile {bridge_cert}",
                f"bridge_keyfile {bridge_key}",
                "bridge_insecure false",
                "bridge_tls_version tlsv1.2",
                f"topic {root}/repo/# in 1",
                f"topic {root}/desired/# in 1",
                f"topic {root}/devices/# out 1",
            ]
        )
        + "\n"
    )


class EdgeBroker(MosquittoProcess):
    """The edge broker bridged to ``core`` (a started FleetBroker). Starting it also gives the
    bridge its certificate and ACL entry on the core, and restarts the core to load them."""

    def __init__(self, work_dir: Path, core: FleetBroker) -> None:
        self.work_dir = work_dir
        self.core = core
        self.port = 0
        self.stderr_path = work_dir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._clients: list[mqtt.Client] = []

    @property
    def _output_path(self) -> Path:
        return self.stderr_path

    @property
    def url(self) -> str:
        return f"mqtts://{HOST}:{self.port}"

    def start(self) -> None:
        first = self.port == 0
        if first:
            self._prepare()

        def take(port: int, _attempt: int) -> None:
            self.port = port
            self._write_conf()

        def start() -> None:
            self._proc, self._log = launch(
                self.work_dir / "mosquitto.conf", self.stderr_path, self.port, self.work_dir
            )

        self._launch_on_a_free_port(first, take, start)

    def device_config(self, config: Path) -> Path:
        """An enrolled device's agent.toml, pointed at the edge instead of the core."""
        text = config.read_text()
        core = f"{HOST}:{self.core.port}"
        assert core in text, f"{config} does not name the core broker {core}"
        config.write_text(text.replace(core, f"{HOST}:{self.port}"))
        return config

    def client(self, identity: str) -> mqtt.Client:
        """A connected client on the edge with an enrolled device's certificate."""
        client = connect_client(
            HOST,
            self.port,
            identity,
            ca_path=self.core.ca_path,
            cert=self.core._cert_of(identity),
            log_path=self.stderr_path,
        )
        self._clients.append(client)
        return client

    def _prepare(self) -> None:
        core_dir = self.core.directory
        (self.work_dir / "data").mkdir(parents=True, exist_ok=True)
        ca = pki.load_issued(core_dir / "ca.pem", core_dir / "ca.key")
        pki.write_issued(
            pki.issue_client(ca, BRIDGE_CN),
            self.work_dir / "bridge.pem",
            self.work_dir / "bridge.key",
        )
        acl = core_dir / "acl"
        acl.write_text(acl.read_text() + bridge_acl(self._root))
        self.core.restart()  # Mosquitto reads its ACL at start

    @property
    def _root(self) -> str:
        return f"{self.core.topic_prefix}/{self.core.fleet}"

    def _write_conf(self) -> None:
        text = edge_conf(
            self.core.directory,
            self.work_dir,
            port=self.port,
            core_port=self.core.port,
            root=self._root,
            run_as=self.core.run_as,
            bridge_cert=self.work_dir / "bridge.pem",
            bridge_key=self.work_dir / "bridge.key",
        )
        (self.work_dir / "mosquitto.conf").write_text(text)


__all__ = ["BRIDGE_CN", "EdgeBroker", "bridge_acl", "edge_conf"]

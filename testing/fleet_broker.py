"""A broker set up the way users set theirs up: ``broker init`` writes it, ``fleet enroll`` adds
devices, and Mosquitto runs the generated config (mutual TLS, the generated ACL, persistence).

Unlike ``testing.mosquitto.Broker`` (a hand-written config), every test on a ``FleetBroker`` also
tests what ``edge-sdk broker init`` and ``edge-sdk fleet enroll`` produce.

pytest's temporary directories are root-owned 0700, which the ``mosquitto`` user cannot enter;
so as root the broker is initialised with ``--run-as root`` (Mosquitto then keeps root), and
otherwise it runs as whoever runs the tests.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import paho.mqtt.client as mqtt

from edge_sdk.broker.enroll import EnrollRequest, Enrolment, enroll
from edge_sdk.broker.settings import DEFAULT_RUN_AS, make_settings
from edge_sdk.broker.setup import BrokerInit, init_broker
from testing.mosquitto import (
    HOST,
    MosquittoProcess,
    connect_client,
    free_port,
    launch,
)

__all__ = ["FAST_BROKER_TOML", "FAST_EXTRA_TOML", "FleetBroker"]

# Test timings for enrolled agents (what testing/agents.write_config uses): reconnect
# within a second, a short probation, the status sampled every second (published when it changed).
FAST_BROKER_TOML = "reconnect_min_s = 0.2\nreconnect_max_s = 1.0\nfetch_timeout_s = 5.0\n"
FAST_EXTRA_TOML = (
    "[probation]\nseconds = 0.3\ncheck_interval_s = 0.1\n\n"
    "[report]\ninterval_s = 1.0\n\n"
    '[serving]\nlisten = ""\n'
)


class FleetBroker(MosquittoProcess):
    """``broker init`` into ``work_dir / "broker"``, then ``mosquitto -c`` on it.

    ``trust_root`` is the fleet's TUF root.json that ``enroll`` copies beside each agent.toml;
    it is only needed for ``enroll``.
    """

    host = HOST

    def __init__(
        self,
        work_dir: Path,
        *,
        trust_root: Path | None = None,
        fleet: str = "default",
        topic_prefix: str = "edge",
        run_as: str | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.directory = work_dir / "broker"
        self.trust_root = trust_root
        self.fleet = fleet
        self.topic_prefix = topic_prefix
        # Not root: Mosquitto keeps our user whatever the config says.
        self.run_as = run_as or ("root" if os.geteuid() == 0 else DEFAULT_RUN_AS)
        self.stderr_path = work_dir / "mosquitto.stderr"
        self._init: BrokerInit | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._clients: list[mqtt.Client] = []
        self.enrolled: dict[str, Enrolment] = {}

    # -- what tests use ----------------------------------------------------------------------

    @property
    def initialised(self) -> BrokerInit:
        if self._init is None:
            raise RuntimeError("the broker is not initialised until start() is called")
        return self._init

    @property
    def port(self) -> int:
        return self.initialised.settings.port

    @property
    def url(self) -> str:
        """What devices dial (agent.toml); the operator dials ``operator_url``."""
        return self.initialised.settings.url

    @property
    def operator_port(self) -> int:
        return self.initialised.settings.operator_port

    @property
    def operator_url(self) -> str:
        """The operator's listener: what ``--broker`` of an ``edge-sdk fleet`` command is."""
        return self.initialised.settings.operator_url

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def operator_cert(self) -> tuple[Path, Path]:
        return self.directory / "operator.pem", self.directory / "operator.key"

    @property
    def log_path(self) -> Path:
        """What Mosquitto logged to its own log file (the generated ``log_dest file``)."""
        return self.directory / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def enroll(
        self,
        device_id: str,
        *,
        group: str = "default",
        profile: str = "x86-64",
        models: Sequence[str] = ("digits",),
        out: Path | None = None,
        state_dir: Path | None = None,
        extra_toml: str = "",
        broker_toml: str = "",
        force: bool = False,
    ) -> Path:
        """Run the real ``fleet enroll``; returns the agent.toml path.

        ``out`` defaults to ``work_dir / "devices" / device_id`` and the state directory to
        ``out / "state"``. ``extra_toml`` is appended (e.g. ``[probation]`` with test timings;
        see ``FAST_EXTRA_TOML``) and ``broker_toml`` goes into the ``[broker]`` table (see
        ``FAST_BROKER_TOML``).
        """
        if self.trust_root is None:
            raise RuntimeError("construct FleetBroker(..., trust_root=keyring/'root.json')")
        out = out if out is not None else self.work_dir / "devices" / device_id
        enrolment = enroll(
            EnrollRequest(
                device_id=device_id,
                profile=profile,
                models=tuple(models),
                out=out,
                broker_dir=self.directory,
                trust_root=self.trust_root,
                group=group,
                state_dir=str(state_dir if state_dir is not None else out / "state"),
                force=force,
                extra_toml=extra_toml,
                broker_toml=broker_toml,
            )
        )
        self.enrolled[device_id] = enrolment
        return enrolment.config

    def client(
        self,
        identity: str | None = None,
        *,
        cert: tuple[Path, Path] | None = None,
        client_id: str | None = None,
        port: int | None = None,
    ) -> mqtt.Client:
        """A connected MQTT v5 client (``testing.mosquitto.Broker.client``'s contract).

        ``identity`` picks the certificate: ``"operator"``, an enrolled device id, or None for
        no certificate at all; ``cert`` overrides it (a certificate from another CA, say).
        The operator dials the operator's listener and everyone else the devices' one, unless
        ``port`` says otherwise. Raises ``BrokerRefused`` if the broker does not accept it.
        """
        if cert is None and identity is not None:
            cert = self._cert_of(identity)
        if port is None:
            port = self.operator_port if identity == "operator" else self.port
        client = connect_client(
            self.host,
            port,
            identity,
            ca_path=self.ca_path,
            cert=cert,
            client_id=client_id,
            log_path=self.log_path,
        )
        self._clients.append(client)
        return client

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Initialise on first start (a free loopback port), then launch Mosquitto."""
        if self.running:
            raise RuntimeError(f"the broker on port {self.port} is already running")

        def initialise(port: int, attempt: int) -> None:
            self._initialise(port, force=attempt > 0)  # a retry replaces what the first wrote

        def start() -> None:
            self._proc, self._log = launch(
                self.directory / "mosquitto.conf", self.stderr_path, self.port, self.work_dir
            )

        self._launch_on_a_free_port(self._init is None, initialise, start)

    @property
    def _output_path(self) -> Path:
        return self.stderr_path

    # -- internals -------------------------------------------------------------------------

    def _initialise(self, port: int, *, force: bool) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        settings = make_settings(
            self.directory,
            listen=f"{HOST}:{port}",
            # A port of its own (port + 1 may be taken); a clash is retried like the first.
            operator_listen=f"{HOST}:{next(p for p in iter(free_port, 0) if p != port)}",
            hostnames=(HOST, "localhost"),
            fleet=self.fleet,
            topic_prefix=self.topic_prefix,
            run_as=self.run_as,
        )
        self._init = init_broker(settings, force=force)

    def _cert_of(self, identity: str) -> tuple[Path, Path]:
        if identity == "operator":
            return self.operator_cert
        enrolment = self.enrolled.get(identity)
        if enrolment is None:
            raise KeyError(f"{identity!r} is not enrolled; call enroll({identity!r}) first")
        return enrolment.cert, enrolment.key

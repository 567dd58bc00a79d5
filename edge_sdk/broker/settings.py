"""What ``edge-sdk broker init`` is asked for, checked (``make_settings``), and the names and limits
of what it writes: the broker directory's file names, the operator's CN, Mosquitto's packet and
queue caps that the agent's own limits match. Pure; ``edge_sdk.broker.setup`` writes the files.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from edge_sdk.core.wire.topics import Topics
from edge_sdk.errors import InputError

DEFAULT_LISTEN = "0.0.0.0:8883"
DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1")
DEFAULT_RUN_AS = "mosquitto"
OPERATOR_CN = "operator"
# The operator's certificate comes from a CA of its own, which only the operator's listener
# trusts: see ``mosquitto_conf`` for why devices and the operator dial different ports.
OPERATOR_CA = "operator-ca.pem"
OPERATOR_CA_KEY = "operator-ca.key"
BROKER_JSON = "broker.json"
CRL = "crl.pem"
REVOKED_JSON = "revoked.json"
DEVICES_DIR = "devices"

# The agent announces Maximum Packet Size = max(limits.max_chunk_bytes, max_metadata_bytes)
# + 4096, 1 MiB + 4096 by default (docs/protocol.md §7, agent/daemon.py). The broker enforces
# the same cap on what publishers send, so an oversized publish is refused at the door instead
# of being stored as a retained message that no device could ever receive.
MAX_PACKET_SIZE = (1 << 20) + 4096
# Per client, QoS 1 and 2 only. An offline device's persistent session queues desired-state
# messages (a few per rollout), and whatever a QoS 1 subscriber is sent beyond the in-flight
# window and this queue is dropped silently. The operator's tools read devices/+/status at QoS 0,
# which Mosquitto does not cap this way (2,000 retained statuses checked against a cap of 100).
MAX_QUEUED_MESSAGES = 10000
# Retained messages are the repository; the default (30 min) could lose a publish on a crash.
AUTOSAVE_INTERVAL_S = 60

# A POSIX login name; anything else could smuggle a second line into mosquitto.conf.
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}\Z")
_HOST = re.compile(
    r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z"
)


@dataclass(frozen=True)
class BrokerSettings:
    """Everything ``broker init`` needs, checked; ``directory`` is absolute."""

    directory: Path
    listen_host: str
    port: int
    hostnames: tuple[str, ...] = DEFAULT_HOSTNAMES
    fleet: str = "default"
    topic_prefix: str = "edge"
    run_as: str = DEFAULT_RUN_AS
    operator_host: str = ""  # the operator's listener; "" and 0: listen_host and port + 1
    operator_port: int = 0
    # The operator's fleet repository and keyring, for the export line (absolute, so the line
    # works from any directory): without them `fleet publish` would make a new repository
    # wherever it runs.
    repo: Path = Path("fleet-repo")
    keys: Path = Path("keys")

    def __post_init__(self) -> None:
        if not self.operator_host:
            object.__setattr__(self, "operator_host", self.listen_host)
        if not self.operator_port:
            object.__setattr__(self, "operator_port", self.port + 1)

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix, self.fleet)

    @property
    def url(self) -> str:
        host = self.hostnames[0]
        return f"mqtts://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def operator_url(self) -> str:
        """Where the operator's ``edge-sdk fleet`` commands dial (the operator's listener)."""
        host = self.hostnames[0]
        return f"mqtts://{f'[{host}]' if ':' in host else host}:{self.operator_port}"

    @property
    def listen(self) -> str:
        host = self.listen_host
        return f"{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def operator_listen(self) -> str:
        host = self.operator_host
        return f"{f'[{host}]' if ':' in host else host}:{self.operator_port}"

    def path(self, name: str) -> Path:
        return self.directory / name


def parse_listen(text: str, option: str = "--listen") -> tuple[str, int]:
    """``ADDR:PORT`` (``[::]:8883`` for IPv6) into its parts."""
    bad = InputError(f"{option} {text!r}: expected ADDR:PORT, e.g. 0.0.0.0:8883 or [::]:8883")
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise bad
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not _is_ip(host):
            raise bad
    elif not (_is_ip(host) or _HOST.match(host)) or ":" in host:
        raise bad
    return host, int(port_text)


def make_settings(
    directory: Path,
    *,
    listen: str = DEFAULT_LISTEN,
    hostnames: tuple[str, ...] = DEFAULT_HOSTNAMES,
    fleet: str = "default",
    topic_prefix: str = "edge",
    run_as: str = DEFAULT_RUN_AS,
    operator_listen: str | None = None,
    repo: Path = Path("fleet-repo"),
    keys: Path = Path("keys"),
) -> BrokerSettings:
    """Check every input (nothing is written here) and resolve ``directory``.

    ``operator_listen`` defaults to the devices' address with the next port (8884 for 8883).
    """
    host, port = parse_listen(listen)
    if operator_listen is None:
        if port == 65535:
            raise InputError(
                "--listen uses port 65535, so the operator's listener has no port + 1: pass "
                "--operator-listen ADDR:PORT"
            )
        operator_host, operator_port = host, port + 1
    else:
        operator_host, operator_port = parse_listen(operator_listen, "--operator-listen")
    if operator_port == port:
        raise InputError(
            f"--operator-listen uses port {port}, the devices' port: the operator needs a "
            "listener of its own; choose another port"
        )
    if not hostnames:
        raise InputError("--hostname: give at least one name or address devices dial")
    for name in hostnames:
        if not (_is_ip(name) or _HOST.match(name)):
            raise InputError(
                f"--hostname {name!r} is neither a host name nor an IP address; use e.g. "
                "broker.example.com or 192.0.2.10"
            )
    Topics(topic_prefix, fleet)  # raises InputError naming the bad part
    if not _USER.match(run_as):
        raise InputError(f"--run-as {run_as!r} is not a user name; e.g. mosquitto or root")
    absolute = directory.expanduser().absolute()
    if any(ord(c) < 32 for c in str(absolute)):
        # Mosquitto's config is line based: a newline in a path would start a new directive.
        raise InputError(f"{absolute!r}: control characters in DIR; choose another directory")
    return BrokerSettings(
        absolute,
        host,
        port,
        tuple(hostnames),
        fleet,
        topic_prefix,
        run_as,
        operator_host,
        operator_port,
        repo.expanduser().absolute(),
        keys.expanduser().absolute(),
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

"""``edge-sdk broker init``: a ready Mosquitto 2 configuration for one fleet.

The text generation (``acl_text``, ``mosquitto_conf``, ``broker_info``) is pure, so the ACL that
docs/protocol.md shows can be checked against the one we write. ``init_broker`` does the file
work: certificates from ``edge_sdk.broker.pki``, modes, and ownership for the user Mosquitto drops
to.

Mosquitto 2 started as root reads its config, switches to the ``user`` named there, and only then
opens the TLS keys, the ACL, the persistence database and the log. Those files must therefore be
readable (the data directory writable) by that user, and every directory above them traversable
by it; the fleet CA's private key is never referenced by the config and stays with root.
"""

from __future__ import annotations

import grp
import ipaddress
import json
import os
import pwd
import re
import shlex
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_sdk.broker import pki
from edge_sdk.core.atomic import write_bytes_atomic
from edge_sdk.core.topics import Topics
from edge_sdk.errors import InputError, KeyFileError, OutputError

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

_WRITTEN = (
    *("mosquitto.conf", "acl", "ca.pem", "ca.key", "server.pem", "server.key"),
    *("operator.pem", "operator.key", BROKER_JSON, "data", "mosquitto.log", CRL),
    *(OPERATOR_CA, OPERATOR_CA_KEY),
)

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


# --- pure text ---------------------------------------------------------------------------------


def acl_text(topic_prefix: str, fleet: str) -> str:
    """The ``acl_file`` for one fleet, exactly as docs/protocol.md §2 shows it for edge/default.

    Fleet-wide reads are ``pattern`` lines: ``topic`` lines before the first ``user`` line
    apply to anonymous clients only, and certificate-authenticated devices are not anonymous.
    """
    root = Topics(topic_prefix, fleet).root
    return (
        f'# acl_file: one fleet, prefix "{topic_prefix}", fleet "{fleet}"\n'
        "# Each device: read/write its own subtree, read its own desired state.\n"
        f"pattern readwrite {root}/devices/%u/#\n"
        f"pattern read {root}/desired/devices/%u/#\n"
        "# Every device: read group desired state and the repository (signed, public to the "
        "fleet).\n"
        f"pattern read {root}/desired/groups/#\n"
        f"pattern read {root}/repo/#\n"
        "\n"
        "# The operator: everything in the fleet, and the only writer of desired/ and repo/.\n"
        f"user {OPERATOR_CN}\n"
        f"topic readwrite {root}/#\n"
    )


def mosquitto_conf(s: BrokerSettings) -> str:
    """``mosquitto.conf`` for Mosquitto 2: two mutual-TLS listeners, the fleet ACL, persistence.

    A client id is a session: a CONNECT with the id of a connected client closes that client.
    So on the devices' listener the broker replaces every client id with the certificate's CN
    (``use_username_as_clientid``): device A's certificate can only ever be session "A", and
    cannot knock device B off. The operator's commands need ids of their own instead (a
    ``fleet status`` beside a running ``fleet rollout``, whose watch and publisher are two
    sessions), so the operator dials a second listener that keeps the id it sends and admits
    only certificates of the operator CA, which no device certificate chains to.
    """
    return (
        "\n".join(
            [
                f"# Written by `edge-sdk broker init` for {s.topics.root}. Start: mosquitto -c "
                f"{s.path('mosquitto.conf')}",
                "per_listener_settings false",
                "# Started as root, Mosquitto switches to this user before it opens the keys, ACL,",
                "# data and log (`broker init` gave it those). Started by others, it stays so.",
                f"user {s.run_as}",
                "allow_anonymous false",
                f"acl_file {s.path('acl')}",
                "# Retained messages are the fleet repository: keep them across restarts.",
                "persistence true",
                f"persistence_location {s.path('data')}/",
                f"autosave_interval {AUTOSAVE_INTERVAL_S}",
                "# The agent's default Maximum Packet Size (docs/protocol.md §7).",
                f"max_packet_size {MAX_PACKET_SIZE}",
                "# Per client, QoS 1 and 2: what an offline device's session may hold.",
                f"max_queued_messages {MAX_QUEUED_MESSAGES}",
                "# Without it Nagle delays each retained read behind its SUBACK (~40 ms each).",
                "set_tcp_nodelay true",
                f"log_dest file {s.path('mosquitto.log')}",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "connection_messages true",
                "log_timestamp_format %Y-%m-%dT%H:%M:%S",
                "# Listener options must follow their listener line.",
                f"listener {s.port} {s.listen_host}",
                f"cafile {s.path('ca.pem')}",
                "# Revoked device certificates (`edge-sdk fleet revoke`); read at start.",
                f"crlfile {s.path(CRL)}",
                f"certfile {s.path('server.pem')}",
                f"keyfile {s.path('server.key')}",
                "tls_version tlsv1.2",
                "require_certificate true",
                "# The client certificate's CN is the MQTT username, %u in the ACL.",
                "use_identity_as_username true",
                "# ...and the client id: one device's certificate cannot take over (and so",
                "# disconnect) another device's session by sending that device's id.",
                "use_username_as_clientid true",
                "# The operator's listener: only the operator CA's certificates get in, and each",
                "# `edge-sdk fleet` command keeps a client id of its own (edge-sdk-<kind>-...).",
                f"listener {s.operator_port} {s.operator_host}",
                f"cafile {s.path(OPERATOR_CA)}",
                f"certfile {s.path('server.pem')}",
                f"keyfile {s.path('server.key')}",
                "tls_version tlsv1.2",
                "require_certificate true",
                "use_identity_as_username true",
            ]
        )
        + "\n"
    )


def broker_info(s: BrokerSettings) -> dict[str, Any]:
    """``broker.json``: what ``fleet enroll`` needs to write a device's agent.toml."""
    return {
        "url": s.url,
        "fleet": s.fleet,
        "topic_prefix": s.topic_prefix,
        "listen": s.listen,
        "operator_url": s.operator_url,
        "operator_listen": s.operator_listen,
        "hostnames": list(s.hostnames),
        "run_as": s.run_as,
        "ca": "ca.pem",
    }


def export_line(s: BrokerSettings) -> str:
    """The shell line that points the operator's ``edge-sdk fleet`` commands at this broker."""
    values = {
        "EDGE_SDK_BROKER": s.operator_url,
        "EDGE_SDK_BROKER_CA": str(s.path("ca.pem")),
        "EDGE_SDK_BROKER_CERT": str(s.path("operator.pem")),
        "EDGE_SDK_BROKER_KEY": str(s.path("operator.key")),
        "EDGE_SDK_BROKER_DIR": str(s.directory),
        "EDGE_SDK_REPO": str(s.repo),
        "EDGE_SDK_KEYS": str(s.keys),
    }
    if s.fleet != "default":
        values["EDGE_SDK_FLEET"] = s.fleet
    if s.topic_prefix != "edge":
        values["EDGE_SDK_TOPIC_PREFIX"] = s.topic_prefix
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in values.items())


# --- files -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerInit:
    settings: BrokerSettings
    files: tuple[Path, ...]
    chowned_to: str | None  # the user the broker's files now belong to; None: left as ours
    notes: tuple[str, ...] = field(default=())

    @property
    def start_command(self) -> str:
        return f"mosquitto -c {shlex.quote(str(self.settings.path('mosquitto.conf')))}"

    def to_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            **broker_info(s),
            "directory": str(s.directory),
            "files": [str(p) for p in self.files],
            "chowned_to": self.chowned_to,
            "notes": list(self.notes),
            "start_command": self.start_command,
            "export": export_line(s),
        }


def init_broker(s: BrokerSettings, *, force: bool = False) -> BrokerInit:
    """Write the broker directory; refuses to replace an existing fleet CA unless ``force``."""
    ca_key = s.path("ca.key")
    if ca_key.exists() and not force:
        raise OutputError(
            f"{ca_key} exists: this directory already holds a fleet CA, and replacing it locks "
            "out every enrolled device; pass --force to do so anyway, or choose another DIR"
        )
    if s.directory.exists() and not s.directory.is_dir():
        raise OutputError(f"{s.directory} exists and is not a directory; choose another DIR")
    # Everything is generated before the first write: a failure here leaves nothing behind.
    ca = pki.create_ca(f"edge-sdk fleet CA {s.topics.root}")
    server = pki.issue_server(ca, list(s.hostnames))
    operator_ca = pki.create_ca(f"edge-sdk operator CA {s.topics.root}")
    operator = pki.issue_client(operator_ca, OPERATOR_CN)
    try:
        s.directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        (s.path("data")).mkdir(exist_ok=True, mode=0o700)
        (s.path(DEVICES_DIR)).mkdir(exist_ok=True, mode=0o700)
    except OSError as e:
        raise OutputError(
            f"cannot create {s.directory}: {e.strerror}; choose a writable DIR"
        ) from e
    # The CA key first and root's alone; mosquitto.conf last, so a config only ever exists
    # beside the files it names.
    pki.write_issued(ca, s.path("ca.pem"), ca_key)
    pki.write_issued(operator_ca, s.path(OPERATOR_CA), s.path(OPERATOR_CA_KEY))
    pki.write_issued(server, s.path("server.pem"), s.path("server.key"))
    pki.write_issued(operator, s.path("operator.pem"), s.path("operator.key"))
    write_bytes_atomic(s.path("acl"), acl_text(s.topic_prefix, s.fleet).encode())
    # A new CA starts with nothing revoked: the old CA's certificates no longer verify at all.
    write_bytes_atomic(s.path(CRL), pki.create_crl(ca, []))
    write_bytes_atomic(s.path(REVOKED_JSON), b"[]\n", mode=0o600)
    log = s.path("mosquitto.log")
    if not log.exists():
        write_bytes_atomic(log, b"", mode=0o640)
    info = json.dumps(
        {**broker_info(s), "created_at": datetime.now(UTC).isoformat(timespec="seconds")},
        indent=2,
        sort_keys=True,
    )
    write_bytes_atomic(s.path(BROKER_JSON), (info + "\n").encode())
    chowned_to, notes = _hand_over(s)
    write_bytes_atomic(s.path("mosquitto.conf"), mosquitto_conf(s).encode())
    return BrokerInit(s, tuple(s.path(n) for n in _WRITTEN), chowned_to, notes)


def _hand_over(s: BrokerSettings) -> tuple[str | None, tuple[str, ...]]:
    """Give the run-as user what Mosquitto opens after dropping root; say what else to do."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        return None, (
            f"not running as root: Mosquitto started by {me} keeps that user (`user "
            f"{s.run_as}` only applies when it is started as root)",
        )
    if s.run_as == "root":
        return None, ()
    try:
        user = pwd.getpwnam(s.run_as)
    except KeyError:
        return None, (
            f"user {s.run_as!r} does not exist here: create it (e.g. install the mosquitto "
            "package) and chown the server files to it, or rerun with --run-as USER",
        )
    readable = (
        *("server.key", "server.pem", "ca.pem", OPERATOR_CA, CRL, "acl", "mosquitto.log", "data"),
    )
    for name in readable:
        os.chown(s.path(name), user.pw_uid, user.pw_gid)
    notes = []
    blocked = _untraversable(s.directory, user)
    if blocked is not None:
        mode = stat.S_IMODE(blocked.stat().st_mode)
        notes.append(
            f"warning: user {s.run_as} cannot enter {blocked} (mode {mode:04o}), so Mosquitto "
            f"cannot open its keys there: run `chmod o+x {blocked}` or move DIR to e.g. "
            "/etc/mosquitto/edge"
        )
    return s.run_as, tuple(notes)


def _untraversable(directory: Path, user: pwd.struct_passwd) -> Path | None:
    groups = {user.pw_gid, *(g.gr_gid for g in _groups_of(user.pw_name))}
    for path in (directory, *directory.parents):
        st = path.stat()
        if st.st_uid == user.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return path
    return None


def _groups_of(name: str) -> list[grp.struct_group]:
    return [g for g in grp.getgrall() if name in g.gr_mem]


# --- reading it back (for enroll) -------------------------------------------------------------


@dataclass(frozen=True)
class BrokerInfo:
    """A broker directory as ``fleet enroll`` reads it."""

    directory: Path
    url: str
    fleet: str
    topic_prefix: str
    ca: pki.Issued

    @property
    def devices_dir(self) -> Path:
        return self.directory / DEVICES_DIR


def load_broker_info(directory: Path) -> BrokerInfo:
    """Read ``broker.json`` and the fleet CA from what ``broker init`` wrote."""
    path = directory / BROKER_JSON
    hint = "run `edge-sdk broker init DIR` first, or pass --broker-dir DIR"
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise InputError(f"{path} does not exist: not a broker directory; {hint}") from e
    except (OSError, ValueError) as e:
        raise InputError(f"{path} is not readable JSON ({e}); {hint}") from e
    try:
        url, fleet, prefix = document["url"], document["fleet"], document["topic_prefix"]
    except (KeyError, TypeError) as e:
        raise InputError(f"{path}: missing {e}; {hint}") from e
    if not all(isinstance(v, str) for v in (url, fleet, prefix)):
        raise InputError(f"{path}: url, fleet and topic_prefix must be strings; {hint}")
    Topics(prefix, fleet)
    try:
        ca = pki.load_issued(directory / "ca.pem", directory / "ca.key")
    except KeyFileError as e:
        raise KeyFileError(f"{e} (the fleet CA; enrolment runs where `broker init` ran)") from e
    return BrokerInfo(directory, url, fleet, prefix, ca)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

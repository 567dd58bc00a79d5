"""``edge-sdk broker init``: a ready Mosquitto 2 configuration for one fleet, written to one
directory, and read back for ``fleet enroll`` and ``fleet revoke``.

``init_broker`` does the file work: certificates from ``edge_sdk.broker.pki``, the text from
``edge_sdk.broker.config_text`` (settings checked by ``edge_sdk.broker.settings``), modes, and
ownership for the user Mosquitto drops to.

Mosquitto 2 started as root reads its config, switches to the ``user`` named there, and only then
opens the TLS keys, the ACL, the persistence database and the log. Those files must therefore be
readable (the data directory writable) by that user, and every directory above them traversable
by it; the fleet CA's private key is never referenced by the config and stays with root.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shlex
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_sdk.broker import pki
from edge_sdk.broker.config_text import acl_text, broker_info, export_line, mosquitto_conf
from edge_sdk.broker.settings import (
    BROKER_JSON,
    CRL,
    DEVICES_DIR,
    OPERATOR_CA,
    OPERATOR_CA_KEY,
    OPERATOR_CN,
    REVOKED_JSON,
    BrokerSettings,
)
from edge_sdk.core.atomic import write_bytes_atomic
from edge_sdk.core.wire.topics import Topics
from edge_sdk.errors import InputError, KeyFileError, OutputError

_WRITTEN = (
    *("mosquitto.conf", "acl", "ca.pem", "ca.key", "server.pem", "server.key"),
    *("operator.pem", "operator.key", BROKER_JSON, "data", "mosquitto.log", CRL),
    *(OPERATOR_CA, OPERATOR_CA_KEY),
)

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

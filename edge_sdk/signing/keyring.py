"""The keyring directory: what it holds, creating one, and the files of its root history.

A keyring directory holds::

    root.key, root.pub          offline root key (PKCS#8 PEM, mode 0600) and its public half
    online-N.key, online-N.pub  online signing keys for the targets/snapshot/timestamp roles
    root.json                   current TUF root metadata: what devices pin (--trust-root)
    N.root.json                 every root version, so a TUF client can walk 1 -> 2 -> ...

The ``.pub`` files are not secret; they let ``keys show`` and ``keys rotate --revoke`` name a
key without its passphrase, or after the private half is lost. One key file is
:mod:`edge_sdk.signing.key_files`; a new root version is :mod:`edge_sdk.signing.key_rotation`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# The ignore: python-tuf re-exports these names without __all__, which mypy --strict (no
# implicit re-export) flags; the names and their types still resolve.
from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]

from edge_sdk.core.atomic import write_bytes_atomic
from edge_sdk.core.trust.pinned_root import TrustRoot
from edge_sdk.core.trust.root_file import ROOT_JSON, load_trust_root
from edge_sdk.core.trust.tuf_checks import READABLE_JSON
from edge_sdk.errors import InputError, KeyFileError, OutputError
from edge_sdk.signing.key_files import load_public_key, passphrase, signer_of, write_key_pair

ROOT_KEY = "root.key"
ONLINE_ROLES = ("targets", "snapshot", "timestamp")
ROLE_ORDER = ("root", *ONLINE_ROLES)
_ONLINE_RE = re.compile(r"^online-(\d+)\.(key|pub)\Z")
_HISTORY_RE = re.compile(r"^(\d+)\.root\.json\Z")


@dataclass(frozen=True)
class RoleInfo:
    name: str
    keyids: tuple[str, ...]
    threshold: int


@dataclass(frozen=True)
class KeyFile:
    """A key the keyring directory has a file for; ``roles`` is empty once it is revoked."""

    path: Path
    keyid: str
    roles: tuple[str, ...]
    present: bool  # False when the private half is elsewhere (root.key kept offline)


@dataclass(frozen=True)
class KeyringInfo:
    """What a keyring (or a bare root.json) holds, public parts only; ``created`` lists the
    files the operation that returned it wrote."""

    directory: Path
    root_json: Path
    root_version: int
    expires: datetime
    roles: tuple[RoleInfo, ...]
    keys: tuple[KeyFile, ...]
    history: tuple[Path, ...]
    created: tuple[Path, ...] = field(default=())

    def role(self, name: str) -> RoleInfo:
        return next(r for r in self.roles if r.name == name)

    @property
    def root_keyids(self) -> tuple[str, ...]:
        return self.role("root").keyids

    @property
    def online_keyids(self) -> tuple[str, ...]:
        return self.role("targets").keyids

    @property
    def threshold(self) -> int:
        """Signatures a bundle needs (the targets role's threshold)."""
        return self.role("targets").threshold

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``emit_json``); public data only."""
        return {
            "directory": str(self.directory),
            "root_json": str(self.root_json),
            "root_version": self.root_version,
            "expires": self.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "threshold": self.threshold,
            "root_keyids": list(self.root_keyids),
            "online_keyids": list(self.online_keyids),
            "roles": {
                r.name: {"keyids": list(r.keyids), "threshold": r.threshold} for r in self.roles
            },
            "keys": [
                {
                    "path": str(k.path),
                    "keyid": k.keyid,
                    "roles": list(k.roles),
                    "present": k.present,
                }
                for k in self.keys
            ],
            "history": [str(p) for p in self.history],
            "created": [str(p) for p in self.created],
        }


def expiry(days: int) -> datetime:
    """When a root made now for ``days`` days expires (``--expires-days``, at least 1)."""
    if days < 1:
        raise InputError(f"--expires-days must be at least 1, got {days}")
    return datetime.now(UTC) + timedelta(days=days)


def _history(directory: Path) -> tuple[Path, ...]:
    found = [
        (int(m[1]), p) for p in directory.glob("*.root.json") if (m := _HISTORY_RE.match(p.name))
    ]
    return tuple(p for _, p in sorted(found))


def describe_keyring(path: Path, *, created: tuple[Path, ...] = ()) -> KeyringInfo:
    """Summarise a keyring directory (or a bare root.json) without touching private keys."""
    trust = load_trust_root(path)
    root_json = Path(trust.source)
    directory = root_json.parent
    roles = tuple(
        RoleInfo(name, tuple(trust.root.roles[name].keyids), trust.root.roles[name].threshold)
        for name in ROLE_ORDER
    )
    numbered = sorted(
        (int(m[1]), p) for p in directory.glob("online-*.pub") if (m := _ONLINE_RE.match(p.name))
    )
    pubs = [directory / "root.pub", *(p for _, p in numbered)]
    keys = []
    for pub in pubs:
        if pub.exists():
            keyid = load_public_key(pub).keyid
            in_roles = tuple(r.name for r in roles if keyid in r.keyids)
            private = pub.with_suffix(".key")
            keys.append(KeyFile(private, keyid, in_roles, private.exists()))
    return KeyringInfo(
        directory=directory,
        root_json=root_json,
        root_version=trust.version,
        expires=trust.expires,
        roles=roles,
        keys=tuple(keys),
        history=_history(directory),
        created=created,
    )


def _refuse_existing(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory} exists and is not a directory; choose a new keyring path")
    if not directory.exists():
        return
    names = [p.name for p in directory.iterdir()]
    taken = [n for n in names if n in {ROOT_JSON, ROOT_KEY, "root.pub"} or _ONLINE_RE.match(n)]
    taken += [n for n in names if _HISTORY_RE.match(n)]
    if taken:
        first = ROOT_JSON if ROOT_JSON in taken else sorted(taken)[0]
        raise OutputError(
            f"{directory} already holds a keyring ({first}); refusing to overwrite "
            "it: choose an empty directory, or use `edge-sdk keys rotate`"
        )


def init_keys(
    directory: Path, *, online_keys: int = 1, threshold: int = 1, expires_days: int = 365
) -> KeyringInfo:
    """Create a keyring: an offline root key, ``online_keys`` online keys, and root.json v1.

    ``root.key`` is the offline root key: it only signs new root versions (rotation), so move it
    off the build machine (a USB stick, a vault) once this returns, and bring it back only for
    ``rotate_online_key`` / ``rotate_root_key``. The online keys sign bundles; ``threshold`` of
    them must sign each one. ``root.json`` is what devices pin.
    """
    if online_keys < 1:
        raise InputError(f"--online must be at least 1, got {online_keys}")
    if not 1 <= threshold <= online_keys:
        raise InputError(
            f"--threshold must be between 1 and the number of online keys ({online_keys}), "
            f"got {threshold}"
        )
    expires = expiry(expires_days)
    passphrase()  # fail on a bad passphrase before creating anything
    _refuse_existing(directory)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {directory}: {e.strerror}") from e

    root_private = Ed25519PrivateKey.generate()
    root_signer = signer_of(root_private)
    online = [Ed25519PrivateKey.generate() for _ in range(online_keys)]
    root = Root(version=1, expires=expires, consistent_snapshot=True)
    root.add_key(root_signer.public_key, "root")
    created = write_key_pair(directory / ROOT_KEY, root_private)
    for number, private in enumerate(online, start=1):
        signer = signer_of(private)
        for role in ONLINE_ROLES:
            root.add_key(signer.public_key, role)
        created += write_key_pair(directory / f"online-{number}.key", private)
    for role in ONLINE_ROLES:
        root.roles[role].threshold = threshold
    md = Metadata(root)
    md.sign(root_signer)
    created += publish_root(directory, None, md.to_bytes(READABLE_JSON), 1)
    return describe_keyring(directory, created=tuple(created))


def publish_root(directory: Path, previous: bytes | None, new: bytes, version: int) -> list[Path]:
    """Write root ``version`` as ``N.root.json`` and root.json (and the ``previous`` version's
    file if the keyring lacks it); returns the files written."""
    # Versioned files first and root.json last: a crash leaves the old root.json in force.
    written = []
    if previous is not None and not (directory / f"{version - 1}.root.json").exists():
        write_bytes_atomic(directory / f"{version - 1}.root.json", previous)
        written.append(directory / f"{version - 1}.root.json")
    for path in (directory / f"{version}.root.json", directory / ROOT_JSON):
        write_bytes_atomic(path, new)
        written.append(path)
    return written


def next_online_number(directory: Path) -> int:
    """The N of the next free ``online-N.key`` (numbers are never reused, revoked or not)."""
    numbers = [int(m[1]) for p in directory.iterdir() if (m := _ONLINE_RE.match(p.name))]
    return max(numbers, default=0) + 1


def open_keyring(directory: Path) -> TrustRoot:
    """The current root of the keyring ``directory`` (a directory, not a bare root.json)."""
    if not directory.is_dir():
        raise KeyFileError(f"{directory} is not a keyring directory; pass the DIR of `keys init`")
    return load_trust_root(directory)

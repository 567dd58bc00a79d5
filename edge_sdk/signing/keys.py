"""Key files and the keyring directory: the thin I/O layer around ``edge_sdk.core.trust``.

A keyring directory holds::

    root.key, root.pub          offline root key (PKCS#8 PEM, mode 0600) and its public half
    online-N.key, online-N.pub  online signing keys for the targets/snapshot/timestamp roles
    root.json                   current TUF root metadata: what devices pin (--trust-root)
    N.root.json                 every root version, so a TUF client can walk 1 -> 2 -> ...

The ``.pub`` files are not secret; they let ``keys show`` and ``keys rotate --revoke`` name a
key without its passphrase, or after the private half is lost. All keys are Ed25519. If
``EDGE_SDK_KEY_PASSPHRASE`` is set, private keys are written encrypted with it and read with it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    KeySerializationEncryption,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

# The ignores: python-tuf and securesystemslib re-export these names without __all__, which
# mypy --strict (no implicit re-export) flags; the names and their types still resolve.
from securesystemslib.signer import CryptoSigner, SSlibKey  # type: ignore[attr-defined]
from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]
from tuf.api.serialization.json import JSONSerializer

from edge_sdk.core.atomic import write_bytes_atomic
from edge_sdk.core.trust import TrustRoot

# The trust root's file is read where devices read it too (edge_sdk.core.trust_root); the host's
# code keeps finding those names here.
from edge_sdk.core.trust_root import MAX_ROOT_BYTES as MAX_ROOT_BYTES
from edge_sdk.core.trust_root import ROOT_JSON as ROOT_JSON
from edge_sdk.core.trust_root import load_trust_root as load_trust_root
from edge_sdk.core.userfile import read_user_file
from edge_sdk.errors import InputError, KeyFileError, OutputError, TrustError

PASSPHRASE_ENV = "EDGE_SDK_KEY_PASSPHRASE"
MAX_KEY_FILE_BYTES = 64 << 10  # a PEM key is under 1 KiB
ROOT_KEY = "root.key"
ONLINE_ROLES = ("targets", "snapshot", "timestamp")
ROLE_ORDER = ("root", *ONLINE_ROLES)
_ONLINE_RE = re.compile(r"^online-(\d+)\.(key|pub)\Z")
_HISTORY_RE = re.compile(r"^(\d+)\.root\.json\Z")
_PRIVATE_MODE = 0o600
_JSON = JSONSerializer(compact=False)  # readable root.json; signatures cover canonical JSON


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


# --- key files -------------------------------------------------------------------------------


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None:
        return None
    if not value:
        # An empty passphrase would silently write unprotected keys; make it a decision.
        raise InputError(f"{PASSPHRASE_ENV} is set but empty; unset it or set a passphrase")
    return value.encode()


def _signer(private_key: Ed25519PrivateKey) -> CryptoSigner:
    public = SSlibKey.from_crypto(private_key.public_key(), scheme="ed25519")
    return CryptoSigner(private_key, public)


def _read(path: Path, what: str) -> bytes:
    # A key is a few hundred bytes: a FIFO, a device (/dev/zero) or a huge file is refused.
    return read_user_file(path, f"{what} file", MAX_KEY_FILE_BYTES, KeyFileError)


def load_signer(path: Path) -> CryptoSigner:
    """Load an Ed25519 private key (PKCS#8 PEM, maybe encrypted) as a securesystemslib signer."""
    data = _read(path, "key")
    hint = "pass a private key written by `edge-sdk keys init` (e.g. online-1.key)"
    if not data.strip():
        raise KeyFileError(f"{path} is empty, not a private key; {hint}")
    if b"-----BEGIN" not in data:
        raise KeyFileError(f"{path} is not a PEM key file; {hint}")
    if b"PUBLIC KEY-----" in data and b"PRIVATE KEY-----" not in data:
        raise KeyFileError(f"{path} holds a public key, not the private key; {hint}")
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
    password = _passphrase() if encrypted else None
    if encrypted and password is None:
        raise KeyFileError(f"{path} is encrypted; set {PASSPHRASE_ENV} to its passphrase")
    try:
        key = load_pem_private_key(data, password)
    except ValueError as e:
        if encrypted:
            raise KeyFileError(f"cannot decrypt {path}: wrong {PASSPHRASE_ENV}") from e
        raise KeyFileError(f"{path} holds a PEM block that is not a readable private key") from e
    except (TypeError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"{path} holds a private key format edge-sdk cannot read") from e
    if not isinstance(key, Ed25519PrivateKey):
        kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "") or "other"
        raise KeyFileError(
            f"{path} is not an Ed25519 key (found {kind}); edge-sdk signs with Ed25519 only; {hint}"
        )
    return _signer(key)


def load_public_key(path: Path) -> SSlibKey:
    """The public key in ``path``: a ``.pub`` PEM file, or derived from a private key file."""
    data = _read(path, "key")
    if b"PUBLIC KEY-----" not in data:
        return load_signer(path).public_key
    try:
        public = load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"{path} holds a PEM block that is not a readable public key") from e
    if not isinstance(public, Ed25519PublicKey):
        raise KeyFileError(f"{path} is not an Ed25519 public key")
    return SSlibKey.from_crypto(public, scheme="ed25519")


def _write_private(path: Path, private_key: Ed25519PrivateKey) -> Path:
    password = _passphrase()
    encryption: KeySerializationEncryption = (
        BestAvailableEncryption(password) if password else NoEncryption()
    )
    pem = private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
    write_bytes_atomic(path, pem, _PRIVATE_MODE)
    return path


def _write_public(path: Path, private_key: Ed25519PrivateKey) -> Path:
    pem = private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    write_bytes_atomic(path, pem)
    return path


def _write_key(path: Path, private_key: Ed25519PrivateKey) -> list[Path]:
    """``path`` (private, 0600) and its ``.pub`` twin."""
    return [_write_private(path, private_key), _write_public(path.with_suffix(".pub"), private_key)]


# --- keyring ---------------------------------------------------------------------------------


def _expiry(days: int) -> datetime:
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
    expires = _expiry(expires_days)
    _passphrase()  # fail on a bad passphrase before creating anything
    _refuse_existing(directory)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {directory}: {e.strerror}") from e

    root_private = Ed25519PrivateKey.generate()
    root_signer = _signer(root_private)
    online = [Ed25519PrivateKey.generate() for _ in range(online_keys)]
    root = Root(version=1, expires=expires, consistent_snapshot=True)
    root.add_key(root_signer.public_key, "root")
    created = _write_key(directory / ROOT_KEY, root_private)
    for number, private in enumerate(online, start=1):
        signer = _signer(private)
        for role in ONLINE_ROLES:
            root.add_key(signer.public_key, role)
        created += _write_key(directory / f"online-{number}.key", private)
    for role in ONLINE_ROLES:
        root.roles[role].threshold = threshold
    md = Metadata(root)
    md.sign(root_signer)
    created += _publish_root(directory, None, md.to_bytes(_JSON), 1)
    return describe_keyring(directory, created=tuple(created))


def _publish_root(directory: Path, previous: bytes | None, new: bytes, version: int) -> list[Path]:
    # Versioned files first and root.json last: a crash leaves the old root.json in force.
    written = []
    if previous is not None and not (directory / f"{version - 1}.root.json").exists():
        write_bytes_atomic(directory / f"{version - 1}.root.json", previous)
        written.append(directory / f"{version - 1}.root.json")
    for path in (directory / f"{version}.root.json", directory / ROOT_JSON):
        write_bytes_atomic(path, new)
        written.append(path)
    return written


def _load_root_signer(directory: Path, root_key: Path | None, trust: TrustRoot) -> CryptoSigner:
    path = root_key if root_key is not None else directory / ROOT_KEY
    staged = path.with_name(path.name + ".new")
    if staged.exists():
        # rotate_root_key stopped between publishing root.json and replacing the key file.
        raise KeyFileError(
            f"{staged} exists: an earlier rotate-root was interrupted; check which key "
            f"{ROOT_JSON} trusts (`edge-sdk keys show`) and move that file to {path}"
        )
    if not path.exists():
        raise KeyFileError(
            f"{path} not found: changing the root needs the offline root key; bring it back "
            "or pass --root-key PATH"
        )
    signer = load_signer(path)
    if signer.public_key.keyid not in trust.root.roles["root"].keyids:
        raise KeyFileError(f"{path} is not the root key of {trust.source}; pass --root-key PATH")
    return signer


def _next_root(trust: TrustRoot, expires_days: int) -> Metadata[Root]:
    # A fresh copy through bytes: the trusted object is never mutated.
    md = Metadata[Root].from_bytes(trust.metadata.to_bytes())
    md.signed.version += 1
    md.signed.expires = _expiry(expires_days)
    return md


def _next_online_number(directory: Path) -> int:
    numbers = [int(m[1]) for p in directory.iterdir() if (m := _ONLINE_RE.match(p.name))]
    return max(numbers, default=0) + 1


def _checked(trust: TrustRoot, md: Metadata[Root]) -> bytes:
    """Serialize a new root and prove a client holding ``trust`` would accept it."""
    data = md.to_bytes(_JSON)
    try:
        trust.next_root(data, f"new {ROOT_JSON}")
    except (TrustError, KeyFileError) as e:
        raise TrustError(f"refusing to write a root devices would reject: {e}") from e
    return data


def _keyring(directory: Path) -> TrustRoot:
    if not directory.is_dir():
        raise KeyFileError(f"{directory} is not a keyring directory; pass the DIR of `keys init`")
    return load_trust_root(directory)


def rotate_online_key(
    directory: Path,
    *,
    revoke: Path | None = None,
    expires_days: int = 365,
    root_key: Path | None = None,
) -> KeyringInfo:
    """Add a new online key (the next free ``online-N.key``) and optionally revoke one.

    ``revoke`` is the revoked key's ``.key`` or ``.pub`` file; its file is left in place. The
    new root (version + 1) is signed with the offline root key (``root_key``, default
    ``DIR/root.key``); the previous version stays as ``N.root.json`` for clients to chain.
    """
    trust = _keyring(directory)
    signer = _load_root_signer(directory, root_key, trust)
    md = _next_root(trust, expires_days)
    root = md.signed
    if revoke is not None:
        keyid = load_public_key(revoke).keyid
        if keyid not in root.roles["targets"].keyids:
            raise KeyFileError(f"{revoke} is not a current online key of {trust.source}")
        for role in ONLINE_ROLES:
            if keyid in root.roles[role].keyids:
                root.revoke_key(keyid, role)
    private = Ed25519PrivateKey.generate()
    new = _signer(private)
    for role in ONLINE_ROLES:
        root.add_key(new.public_key, role)
        if len(root.roles[role].keyids) < root.roles[role].threshold:
            raise InputError(f"revoking would leave {role} below its threshold")
    md.sign(signer)
    data = _checked(trust, md)
    created = _write_key(directory / f"online-{_next_online_number(directory)}.key", private)
    created += _publish_root(directory, trust.to_bytes(), data, root.version)
    return describe_keyring(directory, created=tuple(created))


def rotate_root_key(
    directory: Path, *, expires_days: int = 365, root_key: Path | None = None
) -> KeyringInfo:
    """Replace the offline root key: root version + 1, signed by both old and new root keys.

    The old key's signature lets devices that pinned the previous root accept this one; the
    new key's signature meets the new root's own threshold. The new private key replaces the
    old one at the same path (``root_key``, default ``DIR/root.key``); it is first saved as
    ``<path>.new`` so a crash part-way never leaves root.json signed by a key that is lost.
    """
    trust = _keyring(directory)
    old = _load_root_signer(directory, root_key, trust)
    key_path = root_key if root_key is not None else directory / ROOT_KEY
    md = _next_root(trust, expires_days)
    root = md.signed
    for keyid in list(root.roles["root"].keyids):
        root.revoke_key(keyid, "root")
    private = Ed25519PrivateKey.generate()
    new = _signer(private)
    root.add_key(new.public_key, "root")
    root.roles["root"].threshold = 1
    md.sign(new)
    md.sign(old, append=True)
    data = _checked(trust, md)
    staged = _write_private(key_path.with_name(key_path.name + ".new"), private)
    created = _publish_root(directory, trust.to_bytes(), data, root.version)
    created.append(_write_private(key_path, private))
    # The public half stays with the keyring even when the private key lives elsewhere.
    created.append(_write_public(directory / "root.pub", private))
    staged.unlink()
    return describe_keyring(directory, created=tuple(created))

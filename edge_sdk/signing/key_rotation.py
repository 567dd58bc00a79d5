"""Rotating the keyring's keys: each rotation is a new root version, signed with the offline
root key, that a device holding the previous root accepts (TUF's root chain).

``rotate_online_key`` adds an online key and may revoke one; ``rotate_root_key`` replaces the
offline root key itself. Both prove a client would accept the new root before writing it, and
write the versioned file before root.json, so a crash part-way leaves the old root in force.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# The ignores: python-tuf and securesystemslib re-export these names without __all__, which
# mypy --strict (no implicit re-export) flags; the names and their types still resolve.
from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]
from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]

from edge_sdk.core.trust.pinned_root import TrustRoot
from edge_sdk.core.trust.root_file import ROOT_JSON
from edge_sdk.core.trust.tuf_checks import READABLE_JSON
from edge_sdk.errors import InputError, KeyFileError, TrustError
from edge_sdk.signing.key_files import (
    load_public_key,
    load_signer,
    signer_of,
    write_key_pair,
    write_private_key,
    write_public_key,
)
from edge_sdk.signing.keyring import (
    ONLINE_ROLES,
    ROOT_KEY,
    KeyringInfo,
    describe_keyring,
    expiry,
    next_online_number,
    open_keyring,
    publish_root,
)


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
    md.signed.expires = expiry(expires_days)
    return md


def _checked(trust: TrustRoot, md: Metadata[Root]) -> bytes:
    """Serialize a new root and prove a client holding ``trust`` would accept it."""
    data = md.to_bytes(READABLE_JSON)
    try:
        trust.next_root(data, f"new {ROOT_JSON}")
    except (TrustError, KeyFileError) as e:
        raise TrustError(f"refusing to write a root devices would reject: {e}") from e
    return data


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
    trust = open_keyring(directory)
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
    new = signer_of(private)
    for role in ONLINE_ROLES:
        root.add_key(new.public_key, role)
        if len(root.roles[role].keyids) < root.roles[role].threshold:
            raise InputError(f"revoking would leave {role} below its threshold")
    md.sign(signer)
    data = _checked(trust, md)
    created = write_key_pair(directory / f"online-{next_online_number(directory)}.key", private)
    created += publish_root(directory, trust.to_bytes(), data, root.version)
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
    trust = open_keyring(directory)
    old = _load_root_signer(directory, root_key, trust)
    key_path = root_key if root_key is not None else directory / ROOT_KEY
    md = _next_root(trust, expires_days)
    root = md.signed
    for keyid in list(root.roles["root"].keyids):
        root.revoke_key(keyid, "root")
    private = Ed25519PrivateKey.generate()
    new = signer_of(private)
    root.add_key(new.public_key, "root")
    root.roles["root"].threshold = 1
    md.sign(new)
    md.sign(old, append=True)
    data = _checked(trust, md)
    staged = write_private_key(key_path.with_name(key_path.name + ".new"), private)
    created = publish_root(directory, trust.to_bytes(), data, root.version)
    created.append(write_private_key(key_path, private))
    # The public half stays with the keyring even when the private key lives elsewhere.
    created.append(write_public_key(directory / "root.pub", private))
    staged.unlink()
    return describe_keyring(directory, created=tuple(created))

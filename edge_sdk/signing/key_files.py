"""One key file: reading an Ed25519 key (PKCS#8 PEM, maybe encrypted) as a signer or a public
key, and writing a new one with its ``.pub`` twin.

All keys are Ed25519. If ``EDGE_SDK_KEY_PASSPHRASE`` is set, private keys are written encrypted
with it and read with it. The keyring directory these files sit in is
:mod:`edge_sdk.signing.keyring`'s business.
"""

from __future__ import annotations

import os
from pathlib import Path

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

# The ignore: securesystemslib re-exports these names without __all__, which mypy --strict (no
# implicit re-export) flags; the names and their types still resolve.
from securesystemslib.signer import CryptoSigner, SSlibKey  # type: ignore[attr-defined]

from edge_sdk.core.atomic import write_bytes_atomic
from edge_sdk.core.userfile import read_user_file
from edge_sdk.errors import InputError, KeyFileError

PASSPHRASE_ENV = "EDGE_SDK_KEY_PASSPHRASE"
MAX_KEY_FILE_BYTES = 64 << 10  # a PEM key is under 1 KiB
_PRIVATE_MODE = 0o600


def passphrase() -> bytes | None:
    """The passphrase private keys are written and read with, or None to write them plain."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None:
        return None
    if not value:
        # An empty passphrase would silently write unprotected keys; make it a decision.
        raise InputError(f"{PASSPHRASE_ENV} is set but empty; unset it or set a passphrase")
    return value.encode()


def signer_of(private_key: Ed25519PrivateKey) -> CryptoSigner:
    """``private_key`` as a securesystemslib signer (its key id is what roots list)."""
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
    password = passphrase() if encrypted else None
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
    return signer_of(key)


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


def write_private_key(path: Path, private_key: Ed25519PrivateKey) -> Path:
    """``private_key`` to ``path`` (mode 0600, encrypted when a passphrase is set)."""
    password = passphrase()
    encryption: KeySerializationEncryption = (
        BestAvailableEncryption(password) if password else NoEncryption()
    )
    pem = private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
    write_bytes_atomic(path, pem, _PRIVATE_MODE)
    return path


def write_public_key(path: Path, private_key: Ed25519PrivateKey) -> Path:
    """The public half of ``private_key`` to ``path``: not secret, names the key without it."""
    pem = private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    write_bytes_atomic(path, pem)
    return path


def write_key_pair(path: Path, private_key: Ed25519PrivateKey) -> list[Path]:
    """``path`` (private, 0600) and its ``.pub`` twin."""
    return [
        write_private_key(path, private_key),
        write_public_key(path.with_suffix(".pub"), private_key),
    ]

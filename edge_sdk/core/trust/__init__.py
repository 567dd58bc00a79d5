"""Trust decisions on bytes: the pinned root, signing a bundle's files, verifying them.

The names callers use, in one place; the logic lives in three pure modules (no file system,
the clock an argument, every failure a typed one-line error from ``edge_sdk.errors``):

    pinned_root.py   TrustRoot: root metadata whose self-signature checked, and its next version
    signatures.py    a bundle's or an assignment's signatures: sign_files, verify_files, ...
    tuf_checks.py    what both share: malformed-metadata checks, why a threshold failed

    root_file.py     the pinned root.json on disk, read by devices and host alike

The agent imports this package, so it stays in ``edge_sdk.core`` and light; key files and
keyrings are ``edge_sdk.signing``'s.
"""

from __future__ import annotations

from edge_sdk.core.trust.pinned_root import TrustRoot
from edge_sdk.core.trust.signatures import (
    CUSTOM_FIELD,
    HASH_ALGORITHM,
    add_signatures,
    sign_files,
    signed_custom,
    verify_bundle,
    verify_files,
)

__all__ = [
    "CUSTOM_FIELD",
    "HASH_ALGORITHM",
    "TrustRoot",
    "add_signatures",
    "sign_files",
    "signed_custom",
    "verify_bundle",
    "verify_files",
]

"""A bundle's (or an assignment's) signatures: signing its files and verifying them against
the pinned root.

Pure, like :mod:`edge_sdk.core.trust.pinned_root`: it never touches the file system, the clock is an
argument, and every way to fail is a typed error from ``edge_sdk.errors`` with a one-line
message that says what to do.

Wire format: a bundle's signatures are TUF *targets* metadata (role ``targets``, JSON) listing
every file of the bundle with its length and sha256. It is signed by the online keys that the
root metadata (``root.json``, the trust root devices pin) names for its ``targets`` role, so a
python-tuf ``ngclient`` or ``Root.verify_delegate("targets", ...)`` accepts it unchanged.

Bundle-wide data (model name, version, profile) passed as ``custom`` is stored in the signed part
as ``signed.custom`` (an unrecognized field that python-tuf keeps and signs over), read back with
:func:`signed_custom`. It is covered by the same signatures as the file hashes, so a device can
trust it to reject wrong software for its profile.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

# The ignores: python-tuf and securesystemslib re-export these names without __all__, which
# mypy --strict (no implicit re-export) flags; the names and their types still resolve.
from securesystemslib.signer import Signer  # type: ignore[attr-defined]
from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.api.metadata import Metadata, TargetFile, Targets  # type: ignore[attr-defined]
from tuf.api.serialization import DeserializationError

from edge_sdk.core.bundle import Bundle
from edge_sdk.core.jsondepth import too_deep
from edge_sdk.core.trust.pinned_root import TrustRoot
from edge_sdk.core.trust.tuf_checks import (
    READABLE_JSON,
    check_threshold,
    describe,
    iso,
    malformed,
    utc,
)
from edge_sdk.errors import BundleError, ExpiredError, TamperedError, UnsignedError

HASH_ALGORITHM = "sha256"
CUSTOM_FIELD = "custom"


def _parse_targets(targets_json: bytes, subject: str = "bundle") -> Metadata[Targets]:
    if too_deep(targets_json):
        raise BundleError(
            f"{subject} signatures nest deeper than any TUF targets metadata; rebuild the {subject}"
        )
    try:
        md = Metadata[Targets].from_bytes(targets_json)
    except DeserializationError as e:
        raise BundleError(
            f"{subject} signatures are not TUF targets metadata: {describe(e)}; "
            f"rebuild the {subject}"
        ) from e
    if not isinstance(md.signed, Targets):
        raise BundleError(
            f"{subject} signatures hold TUF {md.signed.type} metadata, not targets; "
            f"rebuild the {subject}"
        )
    problem = malformed(md)
    if problem:
        raise BundleError(
            f"{subject} signatures are not valid TUF targets metadata: {problem}; "
            f"rebuild the {subject}"
        )
    return md


def sign_files(
    files: Mapping[str, bytes],
    signers: Sequence[Signer],
    *,
    expires: datetime,
    custom: Mapping[str, Any] | None = None,
    version: int = 1,
) -> bytes:
    """Return TUF targets metadata (JSON) listing each file's length and sha256, signed by
    every signer in ``signers``.

    ``custom`` is stored as ``signed.custom`` (see the module docstring); it must be plain
    JSON data. ``version`` lets a publisher number successive signings for rollback checks.
    An empty ``signers`` is a programming error (``ValueError``): an unsigned bundle simply has
    no targets metadata.
    """
    if not signers:
        raise ValueError("sign_files needs at least one signer")
    targets = Targets(
        version=version,
        expires=utc(expires),
        targets={
            name: TargetFile.from_data(name, data, [HASH_ALGORITHM])
            for name, data in sorted(files.items())
        },
    )
    if custom is not None:
        targets.unrecognized_fields[CUSTOM_FIELD] = dict(custom)
    md = Metadata(targets)
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes(READABLE_JSON)


def add_signatures(targets_json: bytes, signers: Sequence[Signer]) -> bytes:
    """Add each signer's signature to existing targets metadata, keeping the others.

    The signed part is only re-serialized, never changed, so existing signatures stay valid.
    A signer that already signed is replaced by its fresh signature (one per key id, as TUF
    requires).
    """
    md = _parse_targets(targets_json)
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes(READABLE_JSON)


def signed_custom(targets: Targets, subject: str = "bundle") -> dict[str, Any]:
    """The ``custom`` mapping given to :func:`sign_files` (empty if none was given)."""
    value = targets.unrecognized_fields.get(CUSTOM_FIELD, {})
    if not isinstance(value, dict):
        raise BundleError(f"{subject} signatures have a non-object {CUSTOM_FIELD!r} field")
    return value


def verify_files(
    root: TrustRoot,
    targets_json: bytes | None,
    files: Mapping[str, bytes],
    *,
    now: datetime | None = None,
    subject: str = "bundle",
) -> Targets:
    """Check ``files`` against targets metadata signed to ``root``'s targets threshold.

    ``subject`` names what is being verified in error messages (a bundle, an assignment).

    Order follows a TUF client: trust root expiry, signatures, targets expiry, then every
    file's length and sha256, and the file set itself (no file missing, none unsigned).
    Returns the verified ``Targets`` so the caller can read ``signed_custom`` from it.
    """
    moment = utc(now) if now is not None else datetime.now(UTC)
    if root.root.is_expired(moment):
        raise ExpiredError(
            f"trust root {root.source} (v{root.version}) expired at {iso(root.expires)}; "
            "issue a fresh one with `edge-sdk keys rotate` and give devices the new root"
        )
    if targets_json is None:
        raise UnsignedError(
            "bundle is not signed: it has no signatures file; "
            "sign it with an online key (`edge-sdk build --key online-1.key`)"
        )
    md = _parse_targets(targets_json, subject)
    check_threshold(
        root.root,
        "targets",
        md,
        subject=subject,
        trust_name=f"trust root {root.source}",
        fix_unsigned="sign it with an online key (`edge-sdk build --key online-1.key`)",
        fix_unknown=(
            "sign it with a current online key, or pass the root.json of the keyring that "
            "signed it with --trust-root"
        ),
        fix_threshold="add signatures with more of the keyring's online keys",
        fix_tampered=f"do not install it; sign the {subject} again from its source",
    )
    targets = md.signed
    if targets.is_expired(moment):
        raise ExpiredError(
            f"{subject} signatures expired at {iso(targets.expires)}; "
            f"re-sign the {subject} and publish it again"
        )
    _check_file_set(targets, files)
    return targets


def _check_file_set(targets: Targets, files: Mapping[str, bytes]) -> None:
    listed, present = set(targets.targets), set(files)
    missing = sorted(listed - present)
    if missing:
        raise TamperedError(
            f"file {missing[0]!r} is signed but missing from the bundle; "
            "do not install it; fetch the bundle again"
        )
    extra = sorted(present - listed)
    if extra:
        raise TamperedError(
            f"file {extra[0]!r} is in the bundle but not covered by its signatures; "
            "do not install it; rebuild and re-sign the bundle"
        )
    for name in sorted(listed):
        target = targets.targets[name]
        if HASH_ALGORITHM not in target.hashes:
            # Never let a weaker or unknown digest stand in for sha256.
            raise BundleError(f"file {name!r} has no {HASH_ALGORITHM} in the signed metadata")
        try:
            target.verify_length_and_hashes(files[name])
        except LengthOrHashMismatchError as e:
            raise TamperedError(
                f"file {name!r} does not match its signed {HASH_ALGORITHM} and length: it was "
                "changed after signing; do not install it; fetch or rebuild the bundle"
            ) from e


def verify_bundle(root: TrustRoot, bundle: Bundle, source: str) -> Targets:
    """Everything ``verify_files`` checks for a bundle's signed files, and then that the
    (now authentic) manifest's own artifact hash agrees with the artifact."""
    targets = verify_files(root, bundle.signatures, bundle.signed_files())
    if hashlib.sha256(bundle.artifact).hexdigest() != bundle.manifest.artifact_sha256:
        raise TamperedError(f"{source}: artifact does not match the hash in the signed manifest")
    return targets

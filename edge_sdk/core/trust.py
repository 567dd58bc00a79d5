"""Trust decisions on bytes: the pinned root, signing a bundle's files, verifying them.

This module is the pure core, in the style of python-tuf's ``TrustedMetadataSet``: it never
touches the file system, the clock is an argument, and every way to fail is a typed error from
``edge_sdk.errors`` with a one-line message that says what to do. ``edge_sdk.signing.keys`` is the
I/O
layer around it.

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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from securesystemslib.exceptions import VerificationError

# The ignores: python-tuf and securesystemslib re-export these names without __all__, which
# mypy --strict (no implicit re-export) flags; the names and their types still resolve.
from securesystemslib.signer import Signer  # type: ignore[attr-defined]
from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.api.metadata import Metadata, Root, TargetFile, Targets  # type: ignore[attr-defined]
from tuf.api.serialization import DeserializationError, SerializationError
from tuf.api.serialization.json import JSONSerializer

from edge_sdk.core.bundle import Bundle
from edge_sdk.core.jsondepth import too_deep
from edge_sdk.errors import (
    BundleError,
    ExpiredError,
    KeyFileError,
    TamperedError,
    ThresholdError,
    TrustError,
    UnknownKeyError,
    UnsignedError,
)

# Indented, sorted JSON: bundles and root.json stay readable and diff well. Signatures cover the
# canonical form of ``signed``, so the layout of these bytes does not affect verification.
_SERIALIZER = JSONSerializer(compact=False)
HASH_ALGORITHM = "sha256"
CUSTOM_FIELD = "custom"
_KEYID_SHOWN = 12


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _describe(exc: BaseException) -> str:
    """Why foreign metadata failed to parse, in words; the cause is more useful than the wrapper."""
    cause = exc.__cause__ or exc
    if isinstance(cause, KeyError):
        return f"missing field {cause.args[0]!r}" if cause.args else "missing field"
    return _one_line(str(cause) or type(cause).__name__)


def _short(keyids: Sequence[str]) -> str:
    return ", ".join(k[:_KEYID_SHOWN] for k in sorted(keyids)) or "none"


def _utc(moment: datetime) -> datetime:
    # python-tuf stores UTC only; a naive datetime is taken to be UTC already.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_threshold(
    delegator: Root,
    role: str,
    md: Metadata[Any],
    *,
    subject: str,
    trust_name: str,
    fix_unsigned: str,
    fix_unknown: str,
    fix_threshold: str,
    fix_tampered: str,
) -> None:
    """Raise the error that best explains why ``md`` lacks ``role``'s threshold in ``delegator``.

    The accept decision is python-tuf's ``get_verification_result``; the rest only sorts the
    failure into unsigned / unknown key / below threshold / tampered so the message can say
    what to do. As in TUF, a met threshold wins even if another trusted signature is bad.
    """
    if not md.signatures:
        raise UnsignedError(f"{subject} is not signed; {fix_unsigned}")
    try:
        result = delegator.get_verification_result(role, md.signed_bytes, md.signatures)
    except VerificationError as e:
        # Raised for a signature that cannot even be decoded (not hex, wrong length).
        raise TamperedError(
            f"{subject} carries a malformed signature ({_one_line(str(e))}); {fix_tampered}"
        ) from e
    if result.verified:
        return
    trusted = set(delegator.get_delegated_role(role).keyids)
    from_trusted = [k for k in md.signatures if k in trusted]
    if not from_trusted:
        raise UnknownKeyError(
            f"{subject} is signed only by key(s) {_short(list(md.signatures))} that "
            f"{trust_name} does not trust for the {role} role; {fix_unknown}"
        )
    failed = [k for k in from_trusted if k not in result.signed]
    if failed:
        raise TamperedError(
            f"{subject} was modified after signing: the signature by trusted key "
            f"{_short(failed)} does not match its content; {fix_tampered}"
        )
    raise ThresholdError(
        f"{subject} has {len(result.signed)} of {result.threshold} required signatures from "
        f"keys trusted for the {role} role; {fix_threshold}"
    )


def _malformed(md: Metadata[Any]) -> str:
    """Why ``md`` cannot even be checked for signatures, or "" if it can.

    python-tuf's parser takes JSON shapes it cannot sign over: a float or NaN anywhere in
    ``signed`` (canonical JSON has no floats), a key id or signature that is not a string. Left
    in, they raise ``SerializationError`` or ``TypeError`` deep inside verification, so every
    parse below refuses them up front, as malformed input with our own error.
    """
    for keyid, signature in md.signatures.items():
        if not isinstance(keyid, str) or not isinstance(signature.signature, str):
            return "a signature's keyid and sig must be strings"
    if isinstance(md.signed, Root):
        for name, role in md.signed.roles.items():
            if not all(isinstance(k, str) for k in role.keyids):
                return f"role {name!r} lists a keyid that is not a string"
            if isinstance(role.threshold, bool) or not isinstance(role.threshold, int):
                return f"role {name!r} has a threshold that is not an integer"
    try:
        md.signed_bytes  # noqa: B018 -- computed for its failure: what verification signs
    except SerializationError:
        return "its signed part holds a value canonical JSON cannot encode (a float, NaN)"
    return ""


def _parse_root(data: bytes, source: str, hint: str) -> Metadata[Root]:
    if too_deep(data):
        raise KeyFileError(f"{source} nests deeper than any TUF root metadata; {hint}")
    try:
        md = Metadata[Root].from_bytes(data)
    except DeserializationError as e:
        raise KeyFileError(f"{source} is not TUF root metadata: {_describe(e)}; {hint}") from e
    if not isinstance(md.signed, Root):
        raise KeyFileError(f"{source} is TUF {md.signed.type} metadata, not root; {hint}")
    problem = _malformed(md)
    if problem:
        raise KeyFileError(f"{source} is not valid TUF root metadata: {problem}; {hint}")
    return md


@dataclass(frozen=True)
class TrustRoot:
    """TUF root metadata whose self-signature has been checked: what a device pins.

    ``metadata`` is python-tuf's mutable object; treat it as read-only (build a new root with
    ``edge_sdk.signing.keys`` instead). ``source`` names where it came from, for error messages.
    """

    metadata: Metadata[Root]
    source: str

    @property
    def root(self) -> Root:
        return self.metadata.signed

    @property
    def version(self) -> int:
        return self.root.version

    @property
    def expires(self) -> datetime:
        return self.root.expires

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> TrustRoot:
        """Parse root metadata and check it meets its own ``root`` threshold.

        Anything else (not JSON, another role, a broken or missing self-signature) is a file
        the user should not have passed as a trust root, hence ``KeyFileError``.
        """
        hint = "pass the root.json written by `edge-sdk keys init`"
        md = _parse_root(data, source, hint)
        try:
            result = md.signed.get_root_verification_result(None, md.signed_bytes, md.signatures)
        except VerificationError as e:
            raise KeyFileError(f"{source} has a malformed signature; {hint}") from e
        if not result.verified:
            raise KeyFileError(
                f"{source} is not signed by its own root key ({len(result.signed)} of "
                f"{result.first.threshold} required signatures valid): it was edited or is "
                f"incomplete; {hint}"
            )
        return cls(md, source)

    def to_bytes(self) -> bytes:
        return self.metadata.to_bytes(_SERIALIZER)

    def next_root(self, data: bytes, source: str) -> TrustRoot:
        """Accept ``data`` as the next root version, as a TUF client walking N.root.json does.

        The new root must be version N+1 and be signed by a threshold of this root's root keys
        *and* of its own (TUF 5.3.4-5.3.5): that is how key rotation and revocation reach a
        device that pinned an older root.
        """
        new = _parse_root(data, source, "use the N.root.json files `edge-sdk keys` wrote")
        if new.signed.version != self.version + 1:
            raise TrustError(
                f"{source} is root version {new.signed.version}, expected {self.version + 1} "
                f"after {self.source}; apply the N.root.json files in order, without gaps"
            )
        common = {
            "subject": f"{source} (root v{new.signed.version})",
            "fix_unsigned": "sign it with the root key (`edge-sdk keys rotate`)",
            "fix_unknown": "sign it with the current root key (`edge-sdk keys rotate-root`)",
            "fix_threshold": "sign it with more root keys",
            "fix_tampered": "restore it from the keyring that wrote it",
        }
        _check_threshold(self.root, "root", new, trust_name=self.source, **common)
        _check_threshold(new.signed, "root", new, trust_name=source, **common)
        return TrustRoot(new, source)


def _parse_targets(targets_json: bytes, subject: str = "bundle") -> Metadata[Targets]:
    if too_deep(targets_json):
        raise BundleError(
            f"{subject} signatures nest deeper than any TUF targets metadata; rebuild the {subject}"
        )
    try:
        md = Metadata[Targets].from_bytes(targets_json)
    except DeserializationError as e:
        raise BundleError(
            f"{subject} signatures are not TUF targets metadata: {_describe(e)}; "
            f"rebuild the {subject}"
        ) from e
    if not isinstance(md.signed, Targets):
        raise BundleError(
            f"{subject} signatures hold TUF {md.signed.type} metadata, not targets; "
            f"rebuild the {subject}"
        )
    problem = _malformed(md)
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
        expires=_utc(expires),
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
    return md.to_bytes(_SERIALIZER)


def add_signatures(targets_json: bytes, signers: Sequence[Signer]) -> bytes:
    """Add each signer's signature to existing targets metadata, keeping the others.

    The signed part is only re-serialized, never changed, so existing signatures stay valid.
    A signer that already signed is replaced by its fresh signature (one per key id, as TUF
    requires).
    """
    md = _parse_targets(targets_json)
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes(_SERIALIZER)


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
    moment = _utc(now) if now is not None else datetime.now(UTC)
    if root.root.is_expired(moment):
        raise ExpiredError(
            f"trust root {root.source} (v{root.version}) expired at {_iso(root.expires)}; "
            "issue a fresh one with `edge-sdk keys rotate` and give devices the new root"
        )
    if targets_json is None:
        raise UnsignedError(
            "bundle is not signed: it has no signatures file; "
            "sign it with an online key (`edge-sdk build --key online-1.key`)"
        )
    md = _parse_targets(targets_json, subject)
    _check_threshold(
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
            f"{subject} signatures expired at {_iso(targets.expires)}; "
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

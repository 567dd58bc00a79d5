"""Checking foreign TUF metadata before trusting it, and saying in words why it failed.

Shared by :mod:`edge_sdk.core.trust.pinned_root` (root metadata) and
:mod:`edge_sdk.core.trust.signatures`
(a bundle's or an assignment's targets metadata): the shapes python-tuf's parser accepts but
cannot sign over, and the sorting of a failed threshold into unsigned / unknown key / below
threshold / tampered, so each one-line error says what to do. Pure: no file system, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from securesystemslib.exceptions import VerificationError

# The ignore: python-tuf re-exports these names without __all__, which mypy --strict (no
# implicit re-export) flags; the names and their types still resolve.
from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]
from tuf.api.serialization import SerializationError
from tuf.api.serialization.json import JSONSerializer

from edge_sdk.core.text import one_line as text_one_line
from edge_sdk.errors import TamperedError, ThresholdError, UnknownKeyError, UnsignedError

# Indented, sorted JSON: bundles and root.json stay readable and diff well. Signatures cover the
# canonical form of ``signed``, so the layout of these bytes does not affect verification.
READABLE_JSON = JSONSerializer(compact=False)
_KEYID_SHOWN = 12


def one_line(text: str, limit: int = 160) -> str:
    """Foreign text in trust messages: one line of at most 160 characters by default."""
    return text_one_line(text, limit)


def describe(exc: BaseException) -> str:
    """Why foreign metadata failed to parse, in words; the cause is more useful than the wrapper."""
    cause = exc.__cause__ or exc
    if isinstance(cause, KeyError):
        return f"missing field {cause.args[0]!r}" if cause.args else "missing field"
    return one_line(str(cause) or type(cause).__name__)


def _short(keyids: Sequence[str]) -> str:
    return ", ".join(k[:_KEYID_SHOWN] for k in sorted(keyids)) or "none"


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC, the only zone python-tuf stores; a naive datetime is taken to be UTC
    already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    """``moment`` as TUF writes an expiry (``2026-01-31T12:00:00Z``)."""
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_threshold(
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
            f"{subject} carries a malformed signature ({one_line(str(e))}); {fix_tampered}"
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


def malformed(md: Metadata[Any]) -> str:
    """Why ``md`` cannot even be checked for signatures, or "" if it can.

    python-tuf's parser takes JSON shapes it cannot sign over: a float or NaN anywhere in
    ``signed`` (canonical JSON has no floats), a key id or signature that is not a string. Left
    in, they raise ``SerializationError`` or ``TypeError`` deep inside verification, so every
    parse refuses them up front, as malformed input with our own error.
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

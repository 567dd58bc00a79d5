"""Desired state: which version of a model a device or group should run, signed by the fleet's
online keys so that only the operator's keyring can move a device (and only forwards, unless
the assignment is a signed rollback).

The wire form is TUF targets metadata with no targets and the assignment in ``signed.custom``
(the same envelope, verifier and threshold rules as bundle signatures, see ``edge_sdk.core.trust``).
``serial`` orders assignments: a device keeps the highest it has seen per model and ignores a
replayed older one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from securesystemslib.signer import Signer  # type: ignore[attr-defined]

from edge_sdk.core.bundle import check_name
from edge_sdk.core.trust import TrustRoot, sign_files, signed_custom, verify_files
from edge_sdk.core.wire.topics import check_identifier
from edge_sdk.errors import BundleError, EdgeSdkError

_SCOPE = re.compile(r"^(devices|groups)/(.+)\Z")
FIELD = "assignment"


@dataclass(frozen=True)
class Assignment:
    model: str
    version: int
    scope: str  # "devices/<id>" or "groups/<group>"
    serial: int
    rollback: bool = False  # may go below the device's anti-rollback floor

    def __post_init__(self) -> None:
        check_name(self.model)
        match = _SCOPE.match(self.scope)
        if match is None:
            raise BundleError(f"assignment scope {self.scope!r} is not devices/<id> or groups/<g>")
        check_identifier(match.group(2), match.group(1)[:-1])
        if self.version < 1 or self.serial < 1:
            raise BundleError("assignment version and serial must be positive integers")

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "scope": self.scope,
            "serial": self.serial,
            "rollback": self.rollback,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Assignment:
        """Strict: every field must already have its type (a signed ``"rollback": "false"``
        must not become ``True``), and any invalid value is a malformed assignment."""
        if not isinstance(doc, dict):
            raise BundleError("assignment is malformed: not a JSON object")
        fields = {"model": str, "version": int, "scope": str, "serial": int, "rollback": bool}
        for name, kind in fields.items():
            value = doc.get(name, False if name == "rollback" else None)
            # bool is an int subclass: a JSON true is not a version number.
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise BundleError(f"assignment is malformed: {name!r} must be a {kind.__name__}")
        try:
            return cls(
                doc["model"],
                doc["version"],
                doc["scope"],
                doc["serial"],
                doc.get("rollback", False),
            )
        except EdgeSdkError as e:
            raise BundleError(f"assignment is malformed: {e}") from e


def sign_assignment(
    assignment: Assignment, signers: Sequence[Signer], *, expires: datetime
) -> bytes:
    return sign_files({}, signers, expires=expires, custom={FIELD: assignment.to_json()}, version=1)


def verify_assignment(root: TrustRoot, data: bytes, *, now: datetime | None = None) -> Assignment:
    """The assignment in ``data`` if it carries the targets threshold of ``root``; otherwise the
    ``TrustError`` (or ``BundleError`` for a malformed payload) that says why not."""
    targets = verify_files(root, data, {}, now=now, subject="assignment")
    custom = signed_custom(targets, "assignment")
    if FIELD not in custom:
        raise BundleError("signed metadata holds no assignment")
    return Assignment.from_json(custom[FIELD])

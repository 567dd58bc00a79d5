"""The pinned trust root as a value: TUF root metadata whose self-signature has been checked,
and the walk from one root version to the next that carries key rotation to a device.

Pure, in the style of python-tuf's ``TrustedMetadataSet``: bytes in, a :class:`TrustRoot` or a
typed one-line error out. Reading root.json from disk is :mod:`edge_sdk.core.trust.root_file`'s job;
writing new roots is the keyring's (:mod:`edge_sdk.signing.key_rotation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from securesystemslib.exceptions import VerificationError

# The ignore: python-tuf re-exports these names without __all__, which mypy --strict (no
# implicit re-export) flags; the names and their types still resolve.
from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]
from tuf.api.serialization import DeserializationError

from edge_sdk.core.jsondepth import too_deep
from edge_sdk.core.trust.tuf_checks import READABLE_JSON, check_threshold, describe, malformed
from edge_sdk.errors import KeyFileError, TrustError


def _parse_root(data: bytes, source: str, hint: str) -> Metadata[Root]:
    if too_deep(data):
        raise KeyFileError(f"{source} nests deeper than any TUF root metadata; {hint}")
    try:
        md = Metadata[Root].from_bytes(data)
    except DeserializationError as e:
        raise KeyFileError(f"{source} is not TUF root metadata: {describe(e)}; {hint}") from e
    if not isinstance(md.signed, Root):
        raise KeyFileError(f"{source} is TUF {md.signed.type} metadata, not root; {hint}")
    problem = malformed(md)
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
        return self.metadata.to_bytes(READABLE_JSON)

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
        check_threshold(self.root, "root", new, trust_name=self.source, **common)
        check_threshold(new.signed, "root", new, trust_name=source, **common)
        return TrustRoot(new, source)

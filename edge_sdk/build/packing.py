"""The last stage of a build: the chosen artifact, its golden vectors and its manifest packed
into one bundle file, signed with the keys given (``--key``), and written atomically.

The keys are loaded again here: the pipeline loads them once before any work only so that a bad
key file fails at once rather than after minutes of conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from edge_sdk.core.bundle import Bundle, Manifest, write_bundle

if TYPE_CHECKING:
    from edge_sdk.build.pipeline import Progress

SIGNATURE_LIFETIME = timedelta(days=365)


def sign(bundle: Bundle, keys: Sequence[Path]) -> bytes | None:
    """TUF targets metadata over the bundle's files, signed by each key; None without keys."""
    if not keys:
        return None
    from edge_sdk.core.trust import sign_files
    from edge_sdk.signing.keys import load_signer

    return sign_files(
        bundle.signed_files(),
        [load_signer(k) for k in keys],
        expires=datetime.now(UTC) + SIGNATURE_LIFETIME,
        custom=bundle.manifest.identity(),
    )


def write_signed(
    target: Path,
    manifest: Manifest,
    artifact: bytes,
    golden_bytes: bytes,
    keys: Sequence[Path],
    progress: Progress,
) -> bool:
    """Write the bundle to ``target``, signed when ``keys`` are given; whether it was signed."""
    manifest_bytes = manifest.to_bytes()
    unsigned = Bundle(manifest, artifact, golden_bytes, None, manifest_bytes)
    signatures = sign(unsigned, keys)
    progress("writing the bundle")
    write_bundle(target, unsigned.with_signatures(signatures) if signatures else unsigned)
    return signatures is not None

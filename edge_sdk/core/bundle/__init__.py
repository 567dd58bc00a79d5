"""The bundle: one zip file (stored, not compressed) that carries everything a device needs.

    manifest.json   what the artifact is: name, version, profile, runtime, precision, I/O,
                    artifact hash and size, golden-vector tolerance, build report, creation time
    model.onnx      the artifact (model.tflite for TFLite profiles)
    golden.npz      golden test vectors: inputs and the artifact's reference outputs
    targets.json    TUF targets metadata signing the three files above (absent when unsigned)

Light on purpose (numpy-free, onnx-free): the device agent reads bundles with it. This module
writes bundles and is where callers import the format from; its parts live beside it:

    layout.py          the member names and each member's size cap
    versions.py        model names, integer versions and the labels people read
    manifest.py        the Manifest and Bundle types
    manifest_json.py   manifest.json read strictly: finite numbers, bounded depth, typed fields
    reader.py          reading a bundle (zip or unpacked) as hostile input, within the caps

Anything wrong with a bundle is one ``BundleError`` line.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from edge_sdk.core.atomic import atomic_writer
from edge_sdk.core.bundle.layout import (
    ARTIFACT_NAMES,
    GOLDEN,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    MAX_METADATA_BYTES,
    SIGNATURES,
    SUFFIX,
)
from edge_sdk.core.bundle.manifest import Bundle, GoldenInfo, Manifest, sha256
from edge_sdk.core.bundle.manifest_json import parse_manifest_json
from edge_sdk.core.bundle.reader import read_bundle, read_header, read_unpacked
from edge_sdk.core.bundle.versions import check_name, format_version, parse_version, shown_label

# What callers import from here; each name is defined in the module named above.
__all__ = [
    "ARTIFACT_NAMES",
    "GOLDEN",
    "MANIFEST",
    "MAX_MANIFEST_BYTES",
    "MAX_METADATA_BYTES",
    "SIGNATURES",
    "SUFFIX",
    "Bundle",
    "GoldenInfo",
    "Manifest",
    "check_name",
    "format_version",
    "parse_manifest_json",
    "parse_version",
    "read_bundle",
    "read_header",
    "read_unpacked",
    "sha256",
    "shown_label",
    "write_bundle",
]


def write_bundle(path: Path, bundle: Bundle) -> None:
    """Write atomically: a crash or error leaves either the old file or nothing, never half."""
    with atomic_writer(path) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as zf:
        for name, data in bundle.signed_files().items():
            zf.writestr(name, data)
        if bundle.signatures is not None:
            zf.writestr(SIGNATURES, bundle.signatures)

"""The manifest, what a bundle says it is, and ``Bundle``, a manifest with its files' bytes.

The manifest names the model, its version and label, the profile and runtime it was built for,
the artifact (file, sha256, size), the inputs and outputs, the golden vectors' tolerance, how the
device should open the artifact, and the build report. Read from bytes it is checked field by
field (``edge_sdk.core.bundle.manifest_json``); written, it is sorted, indented JSON. Its
:meth:`Manifest.identity` is what the signatures carry for a device to check first.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from edge_sdk.core.bundle.layout import (
    ARTIFACT_NAMES,
    FORMAT_VERSION,
    GOLDEN,
    MANIFEST,
    MAX_ARTIFACT_BYTES,
)
from edge_sdk.core.bundle.manifest_json import ManifestFields, parse_manifest_json
from edge_sdk.core.bundle.versions import is_model_name
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.errors import BundleError

MAX_VERSION = 1 << 53  # integers JSON readers in any language agree on
MAX_GOLDEN_COUNT = 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class GoldenInfo:
    count: int
    atol: float
    rtol: float

    def to_json(self) -> dict[str, Any]:
        return {"file": GOLDEN, "count": self.count, "atol": self.atol, "rtol": self.rtol}


@dataclass(frozen=True)
class Manifest:
    name: str
    version: int
    label: str
    profile: str
    runtime: str
    precision: str
    artifact: str
    artifact_sha256: str
    artifact_bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    golden: GoldenInfo
    created: str
    report: dict[str, Any] = field(default_factory=dict)
    # How the device should open the artifact: providers or delegates in order, threads, and
    # runtime options such as onnxruntime's graph optimization level.
    runtime_settings: dict[str, Any] = field(default_factory=dict)
    # The artifact's real tensors where they differ from the source interface (TFLite: NHWC
    # layout, int8/uint8 dtypes, scale and zero point).
    artifact_tensors: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "label": self.label,
            "profile": self.profile,
            "runtime": self.runtime,
            "precision": self.precision,
            "artifact": {
                "file": self.artifact,
                "sha256": self.artifact_sha256,
                "bytes": self.artifact_bytes,
            },
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "golden": self.golden.to_json(),
            "created": self.created,
            "report": self.report,
            "runtime_settings": self.runtime_settings,
            "artifact_tensors": self.artifact_tensors,
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), indent=2, sort_keys=True).encode()

    def identity(self) -> dict[str, Any]:
        """What a device checks before anything else: is this for my model, profile, runtime,
        and newer than what I run? Signed into the TUF metadata as its ``custom`` field."""
        return {
            "name": self.name,
            "version": self.version,
            "profile": self.profile,
            "runtime": self.runtime,
        }

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> Manifest:
        doc = parse_manifest_json(data, source)
        field_of = ManifestFields(source)
        if field_of.integer(doc, "format_version", 0, 1 << 31) != FORMAT_VERSION:
            raise BundleError(
                f"{source}: bundle format {doc['format_version']} is not supported by this "
                f"edge-sdk (it reads format {FORMAT_VERSION}); upgrade edge-sdk"
            )
        artifact = field_of.obj(doc, "artifact")
        golden = field_of.obj(doc, "golden")
        runtime = field_of.text(doc, "runtime")
        if runtime not in ARTIFACT_NAMES:
            raise BundleError(
                f"{source}: manifest.json names an unknown runtime {runtime!r} (this edge-sdk "
                f"knows {', '.join(sorted(ARTIFACT_NAMES))}); upgrade edge-sdk or rebuild"
            )
        artifact_file = field_of.text(artifact, "file", where="artifact")
        if artifact_file != ARTIFACT_NAMES[runtime]:
            raise BundleError(
                f"{source}: manifest names an unexpected artifact {artifact_file!r} for runtime "
                f"{runtime!r} (expected {ARTIFACT_NAMES[runtime]!r})"
            )
        name = field_of.text(doc, "name")
        if not is_model_name(name):
            raise BundleError(f"{source}: manifest.json has an invalid model name {name!r}")
        digest = field_of.text(artifact, "sha256", where="artifact")
        if not _SHA256.match(digest):
            raise BundleError(
                f"{source}: manifest.json field 'artifact.sha256' is not a hex sha256 digest"
            )
        return cls(
            name=name,
            version=field_of.integer(doc, "version", 1, MAX_VERSION),
            label=field_of.text(doc, "label"),
            profile=field_of.text(doc, "profile"),
            runtime=runtime,
            precision=field_of.text(doc, "precision"),
            artifact=artifact_file,
            artifact_sha256=digest,
            artifact_bytes=field_of.integer(
                artifact, "bytes", 1, MAX_ARTIFACT_BYTES, where="artifact"
            ),
            inputs=field_of.tensors(doc, "inputs"),
            outputs=field_of.tensors(doc, "outputs"),
            golden=GoldenInfo(
                field_of.integer(golden, "count", 1, MAX_GOLDEN_COUNT, where="golden"),
                field_of.number(golden, "atol", where="golden"),
                field_of.number(golden, "rtol", where="golden"),
            ),
            created=field_of.text(doc, "created"),
            report=field_of.obj(doc, "report", optional=True),
            runtime_settings=field_of.obj(doc, "runtime_settings", optional=True),
            artifact_tensors=field_of.obj(doc, "artifact_tensors", optional=True),
        )


@dataclass(frozen=True)
class Bundle:
    """A bundle in memory. ``manifest_bytes`` are the manifest as read or written, the bytes the
    signatures cover; ``signatures`` is targets.json, None while unsigned."""

    manifest: Manifest
    artifact: bytes
    golden: bytes
    signatures: bytes | None
    manifest_bytes: bytes

    def signed_files(self) -> dict[str, bytes]:
        """The files TUF metadata covers, by their names inside the bundle."""
        return {
            MANIFEST: self.manifest_bytes,
            self.manifest.artifact: self.artifact,
            GOLDEN: self.golden,
        }

    def with_signatures(self, signatures: bytes) -> Bundle:
        return replace(self, signatures=signatures)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""The bundle: one zip file (stored, not compressed) that carries everything a device needs.

    manifest.json   what the artifact is: name, version, profile, runtime, precision, I/O,
                    artifact hash and size, golden-vector tolerance, build report, creation time
    model.onnx      the artifact (model.tflite for TFLite profiles)
    golden.npz      golden test vectors: inputs and the artifact's reference outputs
    targets.json    TUF targets metadata signing the three files above (absent when unsigned)

Light on purpose (numpy-free, onnx-free): the device agent reads bundles with it. Reading checks
sizes before buffering so a hostile bundle cannot exhaust memory.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_sdk.atomic import atomic_writer
from edge_sdk.errors import BundleError, InputError
from edge_sdk.tensors import TensorSpec

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GOLDEN = "golden.npz"
SIGNATURES = "targets.json"
SUFFIX = ".edgebundle"
MAX_MEMBER_BYTES = 4 << 30  # 4 GiB: past any edge model, short of a zip bomb
MAX_METADATA_BYTES = 16 << 20
ARTIFACT_NAMES = {"onnx": "model.onnx", "tflite": "model.tflite"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_SEMVER = re.compile(r"^(\d{1,4})\.(\d{1,3})\.(\d{1,3})\Z")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InputError(
            f"model name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit; pass --name"
        )
    return name


def parse_version(text: str) -> tuple[int, str]:
    """An integer version, or a semantic version mapped onto a monotonic integer.

    Devices compare the integer (anti-rollback); the label is what people read. ``1.2.3`` becomes
    1002003 so that semver order and integer order agree.
    """
    if text.isdigit() and int(text) > 0:
        return int(text), text
    match = _SEMVER.match(text)
    if match:
        major, minor, patch = (int(g) for g in match.groups())
        return major * 1_000_000 + minor * 1_000 + patch, text
    raise InputError(
        f"--version {text!r} must be a positive integer (e.g. 7) or MAJOR.MINOR.PATCH (e.g. 1.2.0)"
    )


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
        try:
            doc = json.loads(data)
            if doc["format_version"] != FORMAT_VERSION:
                raise BundleError(
                    f"{source}: bundle format {doc['format_version']} is not supported by this "
                    f"edge-sdk (it reads format {FORMAT_VERSION}); upgrade edge-sdk"
                )
            artifact, golden = doc["artifact"], doc["golden"]
            manifest = cls(
                name=str(doc["name"]),
                version=int(doc["version"]),
                label=str(doc["label"]),
                profile=str(doc["profile"]),
                runtime=str(doc["runtime"]),
                precision=str(doc["precision"]),
                artifact=str(artifact["file"]),
                artifact_sha256=str(artifact["sha256"]),
                artifact_bytes=int(artifact["bytes"]),
                inputs=tuple(TensorSpec.from_json(t) for t in doc["inputs"]),
                outputs=tuple(TensorSpec.from_json(t) for t in doc["outputs"]),
                golden=GoldenInfo(
                    int(golden["count"]), float(golden["atol"]), float(golden["rtol"])
                ),
                created=str(doc["created"]),
                report=dict(doc.get("report", {})),
                runtime_settings=dict(doc.get("runtime_settings", {})),
                artifact_tensors=dict(doc.get("artifact_tensors", {})),
            )
        except BundleError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise BundleError(
                f"{source}: manifest.json is malformed ({type(e).__name__}: {e})"
            ) from e
        if manifest.artifact not in ARTIFACT_NAMES.values():
            raise BundleError(
                f"{source}: manifest names an unexpected artifact {manifest.artifact!r}"
            )
        return manifest


@dataclass(frozen=True)
class Bundle:
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


def write_bundle(path: Path, bundle: Bundle) -> None:
    """Write atomically: a crash or error leaves either the old file or nothing, never half."""
    with atomic_writer(path) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as zf:
        for name, data in bundle.signed_files().items():
            zf.writestr(name, data)
        if bundle.signatures is not None:
            zf.writestr(SIGNATURES, bundle.signatures)


MemberReader = Callable[[str, int], "bytes | None"]


def _assemble(source: str, member: MemberReader, hint: str) -> Bundle:
    """The bundle's files, each read through ``member`` (name, size cap) from wherever they are
    kept: a zip file or an installed version's directory."""
    manifest_bytes = member(MANIFEST, MAX_METADATA_BYTES)
    if manifest_bytes is None:
        raise BundleError(f"{source}: no {MANIFEST}; {hint}")
    manifest = Manifest.from_bytes(manifest_bytes, source)
    artifact = member(manifest.artifact, MAX_MEMBER_BYTES)
    golden = member(GOLDEN, MAX_MEMBER_BYTES)
    if artifact is None or golden is None:
        missing = manifest.artifact if artifact is None else GOLDEN
        raise BundleError(f"{source}: bundle is incomplete, {missing} is missing")
    signatures = member(SIGNATURES, MAX_METADATA_BYTES)
    return Bundle(manifest, artifact, golden, signatures, manifest_bytes)


def read_bundle(path: Path) -> Bundle:
    source = str(path)
    if not path.is_file():
        raise BundleError(f"bundle {path} does not exist")

    try:
        with zipfile.ZipFile(path) as zf:

            def member(name: str, cap: int) -> bytes | None:
                try:
                    info = zf.getinfo(name)
                except KeyError:
                    return None
                if info.file_size > cap:
                    raise BundleError(
                        f"{source}: {name} is {info.file_size} bytes, over the {cap}-byte cap"
                    )
                with zf.open(info) as stream:
                    data = stream.read(cap + 1)
                if len(data) > cap:
                    raise BundleError(f"{source}: {name} is larger than its header says")
                return data

            return _assemble(source, member, "is this an edge-sdk bundle?")
    except zipfile.BadZipFile as e:
        raise BundleError(f"{source} is not a bundle (not a zip archive: {e})") from e
    except OSError as e:
        raise BundleError(f"cannot read bundle {source}: {e}") from e


def read_unpacked(directory: Path) -> Bundle:
    """A bundle unpacked into a directory (how a device keeps an installed version): the same
    files under the same names, read with the same size caps."""

    def member(name: str, cap: int) -> bytes | None:
        path = directory / name
        if not path.is_file():
            return None
        if path.stat().st_size > cap:
            raise BundleError(f"{directory}: {name} is over the {cap}-byte cap")
        return path.read_bytes()

    return _assemble(str(directory), member, "is it an installed model version?")

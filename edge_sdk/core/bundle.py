"""The bundle: one zip file (stored, not compressed) that carries everything a device needs.

    manifest.json   what the artifact is: name, version, profile, runtime, precision, I/O,
                    artifact hash and size, golden-vector tolerance, build report, creation time
    model.onnx      the artifact (model.tflite for TFLite profiles)
    golden.npz      golden test vectors: inputs and the artifact's reference outputs
    targets.json    TUF targets metadata signing the three files above (absent when unsigned)

Light on purpose (numpy-free, onnx-free): the device agent reads bundles with it. A bundle is
read as hostile until its signatures verify: the zip directory must name each expected member
once, stored (never compressed, so nothing can inflate), unencrypted, and within the cap of what
that member may be, checked on the header before anything is read and again while reading (a
header can lie). The manifest is strict JSON: finite numbers, bounded depth, every field of the
type it must have. Anything else is one ``BundleError`` line.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_sdk.core.atomic import atomic_writer
from edge_sdk.core.jsondepth import too_deep
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.errors import BundleError, InputError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GOLDEN = "golden.npz"
SIGNATURES = "targets.json"
SUFFIX = ".edgebundle"
MAX_METADATA_BYTES = 16 << 20  # what the agent fetches for any non-artifact file
# Each member is capped by what it may be. ONNX (protobuf) and TFLite (flatbuffers) files cannot
# address more than 2 GiB; a manifest and TUF targets metadata are a few KiB; golden vectors are
# 8 samples (their arrays have their own caps in edge_sdk.core.golden).
MAX_ARTIFACT_BYTES = 2 << 30
MAX_MANIFEST_BYTES = 1 << 20
MAX_SIGNATURES_BYTES = 1 << 20
MAX_GOLDEN_BYTES = MAX_METADATA_BYTES
MAX_JSON_DEPTH = 32  # the build report nests 4 deep
ARTIFACT_NAMES = {"onnx": "model.onnx", "tflite": "model.tflite"}
MEMBER_CAPS = {
    MANIFEST: MAX_MANIFEST_BYTES,
    GOLDEN: MAX_GOLDEN_BYTES,
    SIGNATURES: MAX_SIGNATURES_BYTES,
    **{artifact: MAX_ARTIFACT_BYTES for artifact in ARTIFACT_NAMES.values()},
}
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


def format_version(number: int) -> str:
    """The label a person reads for an integer version when only the integer is at hand.

    The inverse of :func:`parse_version` for semantic versions (1002003 is ``1.2.3``); a plain
    integer version (below 1000000) reads as itself. Where a manifest is at hand its ``label``
    is the user's own spelling and wins.
    """
    if number >= 1_000_000:
        major, rest = divmod(number, 1_000_000)
        minor, patch = divmod(rest, 1_000)
        return f"{major}.{minor}.{patch}"
    return str(number)


def shown_label(label: str) -> str:
    """How a message names a version by its manifest label: ``v1.2.0`` for a number, a label of
    the user's own words as written (``--label 2026-06-rc1``), and never ``vv1``."""
    return f"v{label}" if label[:1].isdigit() else label


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
        field_of = _Fields(source)
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
        if not _NAME.match(name):
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


MAX_VERSION = 1 << 53  # integers JSON readers in any language agree on
MAX_GOLDEN_COUNT = 1024
MAX_TEXT = 256
# A symbolic dimension is written as onnx's shape inference names it: an expression such as a
# detector's anchor count over its strides runs to hundreds of characters.
MAX_DIM_NAME = 4096
MAX_TENSORS = 1024
MAX_RANK = 32
MAX_DIM = (1 << 31) - 1
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on which of two equal keys wins: a forged value must not hide behind one.
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"the key {key[:80]!r} appears twice in one object")
        doc[key] = value
    return doc


def parse_manifest_json(data: bytes, source: str) -> dict[str, Any]:
    """manifest.json as a JSON object: strict JSON (no NaN or Infinity, no number that
    overflows to infinity such as 1e999), nested at most MAX_JSON_DEPTH deep."""
    try:
        if too_deep(data, MAX_JSON_DEPTH):
            raise RecursionError
        doc = json.loads(data, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except RecursionError as e:
        raise BundleError(
            f"{source}: manifest.json nests too deep to read (at most {MAX_JSON_DEPTH} levels)"
        ) from e
    except ValueError as e:  # also UnicodeDecodeError and json.JSONDecodeError
        raise BundleError(f"{source}: manifest.json is not valid JSON ({_short(e)})") from e
    if not isinstance(doc, dict):
        raise BundleError(
            f"{source}: manifest.json is malformed (a JSON {_json_type(doc)}, not an object)"
        )
    problem = _json_problem(doc)
    if problem:
        raise BundleError(f"{source}: manifest.json is malformed ({problem})")
    return doc


def _json_problem(doc: Any) -> str:
    """Why a parsed JSON value is unfit to keep ('' when it is fine); walked without recursion,
    so no depth reaches the interpreter's limit in code that later prints or re-encodes it."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return "a number out of range (such as 1e999)"
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"values nested more than {MAX_JSON_DEPTH} levels deep"
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return ""


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "null" if value is None else "object"


def _short(error: BaseException, limit: int = 120) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Fields:
    """Typed reads of manifest fields; each wrong one is a BundleError naming the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def _get(self, doc: dict[str, Any], key: str, where: str) -> Any:
        if key not in doc:
            raise BundleError(
                f"{self.source}: manifest.json is malformed (no field {_path(where, key)!r})"
            )
        return doc[key]

    def _wrong(self, where: str, key: str, want: str, value: Any) -> BundleError:
        return BundleError(
            f"{self.source}: manifest.json field {_path(where, key)!r} must be {want}, "
            f"not a JSON {_json_type(value)}"
        )

    def text(self, doc: dict[str, Any], key: str, *, where: str = "") -> str:
        value = self._get(doc, key, where)
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise self._wrong(where, key, f"a string of at most {MAX_TEXT} characters", value)
        return value

    def integer(
        self, doc: dict[str, Any], key: str, low: int, high: int, *, where: str = ""
    ) -> int:
        value = self._get(doc, key, where)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(where, key, "an integer", value)
        if not low <= value <= high:
            raise BundleError(
                f"{self.source}: manifest.json field {_path(where, key)!r} is out of range "
                f"({low} to {high})"
            )
        return value

    def number(self, doc: dict[str, Any], key: str, *, where: str = "") -> float:
        value = self._get(doc, key, where)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(where, key, "a number", value)
        number = float(value) if abs(value) < 1e308 else math.inf
        if not math.isfinite(number) or number < 0:
            raise BundleError(
                f"{self.source}: manifest.json field {_path(where, key)!r} must be a finite "
                "number >= 0"
            )
        return number

    def obj(
        self, doc: dict[str, Any], key: str, *, where: str = "", optional: bool = False
    ) -> dict[str, Any]:
        if optional and key not in doc:
            return {}
        value = self._get(doc, key, where)
        if not isinstance(value, dict):
            raise self._wrong(where, key, "an object", value)
        return value

    def tensors(self, doc: dict[str, Any], key: str) -> tuple[TensorSpec, ...]:
        value = self._get(doc, key, "")
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_TENSORS:
            raise self._wrong("", key, f"a list of 1 to {MAX_TENSORS} tensors", value)
        specs = []
        for i, entry in enumerate(value):
            where = f"{key}[{i}]"
            if not isinstance(entry, dict):
                raise self._wrong("", where, "an object", entry)
            shape = self._get(entry, "shape", where)
            if not isinstance(shape, list) or len(shape) > MAX_RANK:
                raise self._wrong(where, "shape", f"a list of at most {MAX_RANK} dimensions", shape)
            dims: list[int | str] = []
            for d in shape:
                if isinstance(d, bool) or not isinstance(d, int | str):
                    raise self._wrong(where, "shape", "a list of integers and names", d)
                out_of_range = d > MAX_DIM if isinstance(d, int) else len(d) > MAX_DIM_NAME
                if (isinstance(d, int) and d < 0) or out_of_range:
                    raise BundleError(
                        f"{self.source}: manifest.json field {where}.shape holds a dimension "
                        "out of range"
                    )
                dims.append(d)
            layout = self.text(entry, "layout", where=where) if "layout" in entry else ""
            specs.append(
                TensorSpec(
                    self.text(entry, "name", where=where),
                    tuple(dims),
                    self.text(entry, "dtype", where=where),
                    layout,
                )
            )
        return tuple(specs)


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


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


MemberReader = Callable[[str], "bytes | None"]


def _assemble(source: str, member: MemberReader, hint: str) -> Bundle:
    """The bundle's files, each read through ``member`` from wherever they are kept: a zip file
    or an installed version's directory. ``member`` enforces each file's cap."""
    manifest_bytes = member(MANIFEST)
    if manifest_bytes is None:
        raise BundleError(f"{source}: no {MANIFEST}; {hint}")
    manifest = Manifest.from_bytes(manifest_bytes, source)
    artifact = member(manifest.artifact)
    golden = member(GOLDEN)
    if artifact is None or golden is None:
        missing = manifest.artifact if artifact is None else GOLDEN
        raise BundleError(f"{source}: bundle is incomplete, {missing} is missing")
    signatures = member(SIGNATURES)
    return Bundle(manifest, artifact, golden, signatures, manifest_bytes)


@dataclass(frozen=True)
class BundleHeader:
    """What ``inspect`` needs: the manifest, and whether signatures are there (not whether
    they verify). Reading it never touches the artifact or the golden vectors."""

    manifest: Manifest
    manifest_bytes: bytes
    signed: bool


def _check_directory(source: str, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """The zip directory, refused unless it names each expected member at most once, stored,
    unencrypted and within that member's cap. Checked before any member is read."""
    members: dict[str, zipfile.ZipInfo] = {}
    expected = ", ".join(MEMBER_CAPS)
    for info in infos:
        name = info.filename
        if name in members:
            raise BundleError(
                f"{source}: holds two members named {name!r} (one could hide a forged copy); "
                "refused, rebuild the bundle"
            )
        if name not in MEMBER_CAPS:
            raise BundleError(
                f"{source}: unexpected member {name[:80]!r}; a bundle holds only {expected}"
            )
        if info.flag_bits & 0x1:
            raise BundleError(f"{source}: member {name} is encrypted; bundles are not")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise BundleError(
                f"{source}: member {name}'s header gives two sizes ({info.compress_size} and "
                f"{info.file_size} bytes); the zip archive is damaged"
            )
        if info.compress_type != zipfile.ZIP_STORED:
            raise BundleError(
                f"{source}: member {name} is compressed (zip method {info.compress_type}); "
                "bundle members are stored uncompressed, rebuild or re-sign it with edge-sdk"
            )
        cap = MEMBER_CAPS[name]
        if info.file_size > cap:
            raise BundleError(
                f"{source}: {name} is {info.file_size} bytes, over its {cap}-byte cap"
            )
        members[name] = info
    artifacts = [n for n in members if n in ARTIFACT_NAMES.values()]
    if len(artifacts) > 1:
        raise BundleError(f"{source}: holds two artifacts ({', '.join(artifacts)}); refused")
    return members


def _zip_reader(source: str, zf: zipfile.ZipFile) -> MemberReader:
    members = _check_directory(source, zf.infolist())

    def member(name: str) -> bytes | None:
        info = members.get(name)
        if info is None:
            return None
        # The header's size can lie: read at most one byte past it and compare.
        with zf.open(info) as stream:
            data = stream.read(info.file_size + 1)
        if len(data) != info.file_size:
            raise BundleError(
                f"{source}: {name} holds {len(data)} bytes, its header says {info.file_size}"
            )
        return data

    return member


def _reading_zip(source: str, path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise BundleError(f"bundle {path} does not exist (or is not a regular file)")
    return zipfile.ZipFile(path)


# What the zip module raises for a damaged archive, beyond BadZipFile: a truncated member
# (EOFError), a header field it cannot decode (ValueError, struct.error via ValueError, a
# filename that is not valid text), or a method it does not know (NotImplementedError).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    EOFError,
    ValueError,
    NotImplementedError,
    struct.error,
    zlib.error,
)


def _os_error(source: str, error: OSError) -> BundleError:
    if error.errno == errno.EINVAL:  # a seek to an offset a damaged directory gave
        return BundleError(f"{source} is not a bundle (a damaged zip archive: {_short(error)})")
    return BundleError(f"cannot read bundle {source}: {_short(error)}")


def read_bundle(path: Path) -> Bundle:
    """Every file of the bundle, for commands that verify or run it."""
    source = str(path)
    try:
        with _reading_zip(source, path) as zf:
            bundle = _assemble(source, _zip_reader(source, zf), "is this an edge-sdk bundle?")
            names = set(zf.namelist())
    except _ZIP_ERRORS as e:
        raise BundleError(
            f"{source} is not a bundle (not a zip archive, or a damaged one: {_short(e)})"
        ) from e
    except OSError as e:
        raise _os_error(source, e) from e
    _refuse_stray_artifact(source, names, bundle.manifest)
    return bundle


def _refuse_stray_artifact(source: str, names: set[str], manifest: Manifest) -> None:
    stray = names & set(ARTIFACT_NAMES.values()) - {manifest.artifact}
    if stray:
        raise BundleError(
            f"{source}: holds {', '.join(sorted(stray))} but its manifest names {manifest.artifact}"
        )


def read_header(path: Path) -> BundleHeader:
    """The manifest and whether the bundle carries signatures, without reading the artifact or
    the golden vectors (their headers are still checked against their caps)."""
    source = str(path)
    try:
        with _reading_zip(source, path) as zf:
            member = _zip_reader(source, zf)
            manifest_bytes = member(MANIFEST)
            if manifest_bytes is None:
                raise BundleError(f"{source}: no {MANIFEST}; is this an edge-sdk bundle?")
            manifest = Manifest.from_bytes(manifest_bytes, source)
            names = set(zf.namelist())
    except _ZIP_ERRORS as e:
        raise BundleError(
            f"{source} is not a bundle (not a zip archive, or a damaged one: {_short(e)})"
        ) from e
    except OSError as e:
        raise _os_error(source, e) from e
    _refuse_stray_artifact(source, names, manifest)
    return BundleHeader(manifest, manifest_bytes, SIGNATURES in names)


def read_unpacked(directory: Path) -> Bundle:
    """A bundle unpacked into a directory (how a device keeps an installed version): the same
    files under the same names, read with the same size caps."""

    def member(name: str) -> bytes | None:
        path = directory / name
        cap = MEMBER_CAPS[name]
        try:
            if not path.is_file():
                return None
            with path.open("rb") as handle:
                data = handle.read(cap + 1)
        except OSError as e:
            raise BundleError(f"{directory}: cannot read {name}: {_short(e)}") from e
        if len(data) > cap:
            raise BundleError(f"{directory}: {name} is over its {cap}-byte cap")
        return data

    return _assemble(str(directory), member, "is it an installed model version?")

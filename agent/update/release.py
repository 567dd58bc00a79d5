"""What the signed metadata says a release holds, read and checked before a byte is fetched.

A release is one model version's variant for this device's profile: its files, each with its
signed length, sha256 and chunk list, and the HTTP(S) mirrors it may be fetched from. Nothing
here decides trust on its own: it all comes from targets metadata that python-tuf has verified
(``agent.update.tuf_mqtt``); :func:`read_release` refuses anything that does not match this
device (model, version, profile, runtime) or is over its caps, before any download starts.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.update.http_fetch import parse_mirrors
from agent.update.tuf_mqtt import TufSession
from edge_sdk.core.bundle import (
    ARTIFACT_NAMES,
    GOLDEN,
    MANIFEST,
    MAX_METADATA_BYTES,
    SIGNATURES,
    format_version,
)
from edge_sdk.errors import OversizeError, TamperedError, UpdateError, WrongTargetError

_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
ALLOWED_FILES = frozenset({MANIFEST, GOLDEN, SIGNATURES, *ARTIFACT_NAMES.values()})
MIRRORS = "mirrors"  # the manifest target's custom key naming the release's HTTP(S) mirrors


def target_path(model: str, version: int, file: str, profile: str | None = None) -> str:
    """A release file's target: ``<model>/<version>/<file>`` for a release's first variant,
    ``<model>/<version>/<profile>/<file>`` for each further profile's
    (edge_sdk.signing.repository)."""
    if profile is None:
        return f"{model}/{version}/{file}"
    return f"{model}/{version}/{profile}/{file}"


@dataclass(frozen=True)
class FileSpec:
    name: str
    length: int
    sha256: str
    chunks: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Release:
    name: str
    version: int
    profile: str
    runtime: str
    files: tuple[FileSpec, ...]
    # HTTP(S) base URLs the signed release names for its chunks, in the order to try them
    # (agent.update.http_fetch); empty: the broker is the only source.
    mirrors: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(f.length for f in self.files)

    def chunk_index(self) -> dict[str, list[list[Any]]]:
        return {f.name: [[sha, n] for sha, n in f.chunks] for f in self.files}


@dataclass(frozen=True)
class Limits:
    max_chunk_bytes: int
    max_artifact_bytes: int


def _file_spec(
    session: TufSession,
    model: str,
    version: int,
    name: str,
    limits: Limits,
    variant: str | None = None,
) -> FileSpec:
    info = session.target(target_path(model, version, name, variant))
    if info is None:
        raise TamperedError(
            f"release {model} {version_text(version)} lists {name} but the metadata has no "
            "such target"
        )
    cap = limits.max_artifact_bytes if name in ARTIFACT_NAMES.values() else MAX_METADATA_BYTES
    if info.length > cap:
        raise OversizeError(
            f"{name} of {model} {version_text(version)} is {info.length} bytes, over this "
            f"device's cap of {cap}"
        )
    sha = info.hashes.get("sha256", "")
    custom = info.custom if isinstance(info.custom, dict) else {}
    raw = custom.get("chunks")
    if not _SHA256.match(sha) or not isinstance(raw, list):
        raise TamperedError(
            f"{name} of {model} {version_text(version)} has no sha256 or chunk list in its metadata"
        )
    chunks: list[tuple[str, int]] = []
    for entry in raw:
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and _SHA256.match(entry[0])
            and type(entry[1]) is int  # not a bool, which JSON's true would give
        ):
            raise TamperedError(
                f"{name} of {model} {version_text(version)} has a malformed chunk entry"
            )
        if not 0 < entry[1] <= limits.max_chunk_bytes:
            raise OversizeError(
                f"a chunk of {name} is {entry[1]} bytes, over this device's cap of "
                f"{limits.max_chunk_bytes}"
            )
        chunks.append((entry[0], entry[1]))
    if sum(n for _, n in chunks) != info.length:
        raise TamperedError(f"the chunks of {name} do not add up to its signed length")
    return FileSpec(name, info.length, sha, tuple(chunks))


# The modules each runtime loads from (edge_sdk.runtime), and what installs them on a device.
RUNTIME_MODULES = {"onnx": ("onnxruntime",), "tflite": ("ai_edge_litert", "tflite_runtime")}
INSTALL_HINT = {
    "onnx": "pip install 'edgesdk-fleet[agent]' (onnxruntime)",
    "tflite": "pip install 'edgesdk-fleet[agent-tflite]' (ai-edge-litert; or tflite-runtime)",
}


def runtime_installed(runtime: str) -> bool:
    """Whether this device can load a bundle built for ``runtime`` (without importing it)."""
    return any(importlib.util.find_spec(m) is not None for m in RUNTIME_MODULES.get(runtime, ()))


def read_release(
    session: TufSession,
    model: str,
    version: int,
    *,
    profile: str,
    runtimes: Sequence[str],
    limits: Limits,
    installed: Callable[[str], bool] = runtime_installed,
) -> Release:
    """The signed description of this device's variant of the release, refused before any
    download if it is for another model, version or profile, or a runtime the profile does not
    name (``runtimes``: its own, then its second) or this device lacks, lists unexpected files,
    or is bigger than the caps.

    A release holds a variant per profile: this device's own profile directory is looked up
    first, then the release's first variant (the only one a release published before variants
    existed has), whose record must then name this device's profile."""
    variant: str | None = profile
    info = session.target(target_path(model, version, MANIFEST, profile))
    if info is None:
        variant, info = None, session.target(target_path(model, version, MANIFEST))
    if info is None:
        raise UpdateError(
            f"{model} {version_text(version)} is not published in the fleet repository"
        )
    custom = info.custom if isinstance(info.custom, dict) else {}
    doc = custom.get("release")
    if not isinstance(doc, dict):
        raise TamperedError(
            f"{model} {version_text(version)}: the manifest target carries no release record"
        )
    if doc.get("name") != model or type(doc.get("version")) is not int or doc["version"] != version:
        raise WrongTargetError(
            f"release record names {doc.get('name')} v{doc.get('version')}, not "
            f"{model} {version_text(version)}"
        )
    if doc.get("profile") != profile:
        raise WrongTargetError(
            f"{model} {version_text(version)} is built for profile {doc.get('profile')!r}, this "
            f"device is {profile!r}; publish a build for {profile}"
        )
    runtime = doc.get("runtime")
    if not isinstance(runtime, str) or runtime not in runtimes:
        raise WrongTargetError(
            f"{model} {version_text(version)} needs runtime {runtime!r}, this device runs "
            f"{' or '.join(repr(r) for r in runtimes)}"
        )
    if not installed(runtime):
        raise WrongTargetError(
            f"{model} {version_text(version)} was built for runtime {runtime!r}, which is not "
            f"installed on this device: {INSTALL_HINT[runtime]}"
        )
    names = doc.get("files")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise TamperedError(f"{model} {version_text(version)}: the release record has no file list")
    unexpected = sorted(set(names) - ALLOWED_FILES)
    if unexpected or len(set(names)) != len(names) or MANIFEST not in names or GOLDEN not in names:
        raise TamperedError(f"{model} {version_text(version)}: unexpected file list {names}")
    files = tuple(_file_spec(session, model, version, n, limits, variant) for n in names)
    try:
        mirrors = parse_mirrors(custom.get(MIRRORS))
    except ValueError as e:
        raise TamperedError(
            f"{model} {version_text(version)}: the signed mirror list is malformed ({e}); "
            "publish it again with valid --store-url values"
        ) from e
    return Release(model, version, profile, runtime, files, mirrors)


def unique_chunks(release: Release) -> dict[str, int]:
    chunks: dict[str, int] = {}
    for f in release.files:
        for sha, n in f.chunks:
            chunks[sha] = n
    return chunks


def bytes_needed(release: Release, have: Iterable[str]) -> int:
    """Disk this update takes at its peak: chunks still to fetch plus the assembled files."""
    held = set(have)
    return (
        sum(n for sha, n in unique_chunks(release).items() if sha not in held) + release.total_bytes
    )


def version_text(version: int) -> str:
    """A version as its user wrote it (v1.2.0), from the integer a message has at hand."""
    return f"v{format_version(version)}"

"""Reading a bundle as hostile input: from its zip file, or unpacked into a directory.

A bundle is read as hostile until its signatures verify: the zip directory must name each
expected member once, stored (never compressed, so nothing can inflate), unencrypted, and within
the cap of what that member may be (``edge_sdk.core.bundle.layout``), checked on the header
before anything is read and again while reading (a header can lie). Whatever the zip module
raises for a damaged archive, and any failure to read, is one ``BundleError`` line.
"""

from __future__ import annotations

import contextlib
import errno
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edge_sdk.core.bundle.layout import ARTIFACT_NAMES, GOLDEN, MANIFEST, MEMBER_CAPS, SIGNATURES
from edge_sdk.core.bundle.manifest import Bundle, Manifest
from edge_sdk.core.bundle.manifest_json import short_error
from edge_sdk.errors import BundleError

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


@contextlib.contextmanager
def _opened_zip(source: str, path: Path) -> Iterator[zipfile.ZipFile]:
    """The bundle's zip file, open for reading; whatever the zip module or the OS raises while
    it is open (see ``_ZIP_ERRORS``) comes out as one ``BundleError``."""
    try:
        with _reading_zip(source, path) as zf:
            yield zf
    except _ZIP_ERRORS as e:
        raise BundleError(
            f"{source} is not a bundle (not a zip archive, or a damaged one: {short_error(e)})"
        ) from e
    except OSError as e:
        raise _os_error(source, e) from e


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
        return BundleError(
            f"{source} is not a bundle (a damaged zip archive: {short_error(error)})"
        )
    return BundleError(f"cannot read bundle {source}: {short_error(error)}")


def read_bundle(path: Path) -> Bundle:
    """Every file of the bundle, for commands that verify or run it."""
    source = str(path)
    with _opened_zip(source, path) as zf:
        bundle = _assemble(source, _zip_reader(source, zf), "is this an edge-sdk bundle?")
        names = set(zf.namelist())
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
    with _opened_zip(source, path) as zf:
        member = _zip_reader(source, zf)
        manifest_bytes = member(MANIFEST)
        if manifest_bytes is None:
            raise BundleError(f"{source}: no {MANIFEST}; is this an edge-sdk bundle?")
        manifest = Manifest.from_bytes(manifest_bytes, source)
        names = set(zf.namelist())
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
            raise BundleError(f"{directory}: cannot read {name}: {short_error(e)}") from e
        if len(data) > cap:
            raise BundleError(f"{directory}: {name} is over its {cap}-byte cap")
        return data

    return _assemble(str(directory), member, "is it an installed model version?")

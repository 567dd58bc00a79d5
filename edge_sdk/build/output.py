"""Where a build writes: the bundle's name, version and file in ``--out``, decided and checked
before any work starts; the claim on that file while it is built, so that two builds of the same
bundle cannot both succeed; and the scratch directory that holds every intermediate, removed
with the claim even when a signal ends the process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_sdk.core.bundle.layout import SUFFIX
from edge_sdk.core.bundle.versions import check_name, format_version, parse_version
from edge_sdk.core.interrupt import on_abrupt_exit
from edge_sdk.errors import InputError, OutputError

if TYPE_CHECKING:
    from edge_sdk.build.pipeline import BuildRequest

# Versions travel as JSON numbers; past 2**53 - 1 a JSON reader may round them.
MAX_VERSION = 2**53 - 1
MAX_LABEL = 64


def check_out_dir(out: Path) -> None:
    """``--out``, made if it is missing, and refused unless it is a writable directory."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create --out {out}: {e.strerror}") from e
    if not out.is_dir() or not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out} is not a writable directory")


@dataclass(frozen=True)
class BundleIdentity:
    """What the bundle will be called, decided (and validated) before any work starts."""

    name: str
    version: int
    label: str
    target: Path


def bundle_identity(request: BuildRequest) -> BundleIdentity:
    """--name, --version and --label checked as given: an empty value is a mistake, not "use the
    default"; version 0 (or 0.0.0) is below every device's floor."""
    name = check_name(request.model.stem if request.name is None else request.name)
    if request.version is None:
        version = next_version(request.out, name)
        label = f"v{format_version(version)}"
    else:
        if not request.version.isascii() or len(request.version) > 32:
            # "²".isdigit() is true and int() of 5,000 digits raises: stop both here.
            raise InputError(
                f"--version {request.version[:40]!r} must be a positive integer (e.g. 7) or "
                "MAJOR.MINOR.PATCH (e.g. 1.2.0)"
            )
        version, label = parse_version(request.version)
        if not 0 < version <= MAX_VERSION:
            raise InputError(
                f"--version {request.version!r} must be above 0 and at most {MAX_VERSION} "
                "(e.g. 7 or 1.2.0)"
            )
    if request.label is not None:
        if not request.label.strip() or len(request.label) > MAX_LABEL:
            raise InputError(
                f"--label {request.label!r} must be 1-{MAX_LABEL} characters, not blank; "
                "leave it out to use the version"
            )
        if not request.label.isprintable():
            raise InputError(f"--label {request.label!r} must hold printable characters only")
        label = request.label
    # Named as the user wrote the version (digits-v1.2.0-...), not by the integer devices compare.
    shown = format_version(version)
    target = request.out / f"{name}-v{shown}-{request.profile.id}{SUFFIX}"
    return BundleIdentity(name, version, label, target)


@contextlib.contextmanager
def claim(target: Path) -> Iterator[None]:
    """Hold ``target`` for this build: a second build of the same bundle into the same --out
    fails at once instead of both succeeding and one replacing the other. The lock is an
    advisory ``flock`` on a hidden file beside it, released by the kernel if we die."""
    lock = target.with_name(f".{target.name}.lock")
    busy = OutputError(
        f"another build is writing {target} right now; wait for it, or pass another --version"
    )
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise OutputError(
            f"cannot write to {target.parent}: {e.strerror}; choose a writable --out"
        ) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the build that held it finished and removed it while we waited
            raise busy
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)  # still holding the lock: no one else can be inside
    finally:
        os.close(fd)


@contextlib.contextmanager
def scratch_inside(workdir: Path, target: Path) -> Iterator[None]:
    """Every temporary file or folder made during the build (ours, onnxruntime's optimizer and
    calibrators') goes inside ``workdir``, so removing it leaves nothing behind; and if a signal
    forces an exit without unwinding (see ``edge_sdk.core.interrupt``), it is removed then too, with
    the lock and any half-written bundle."""
    scratch = workdir / "tmp"
    scratch.mkdir()

    def remove() -> None:
        shutil.rmtree(workdir, ignore_errors=True)
        for partial in target.parent.glob(f".{target.name}.*.tmp"):
            partial.unlink(missing_ok=True)
        target.with_name(f".{target.name}.lock").unlink(missing_ok=True)

    previous = tempfile.tempdir
    tempfile.tempdir = str(scratch)
    try:
        with on_abrupt_exit(remove):
            yield
    finally:
        tempfile.tempdir = previous


def next_version(out: Path, name: str) -> int:
    versions = []
    for path in out.glob(f"{name}-v*-*{SUFFIX}"):
        number = path.name[len(name) + 2 :].split("-", 1)[0]
        with contextlib.suppress(InputError):  # not a version: someone else's file
            versions.append(parse_version(number)[0])
    return max(versions, default=0) + 1

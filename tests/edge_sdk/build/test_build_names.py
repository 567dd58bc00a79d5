"""A bundle's file is named by the version as its user wrote it (``digits-v1.2.0-x86-64``), and
the next automatic version follows on from such names."""

from __future__ import annotations

from pathlib import Path

from edge_sdk.build.output import bundle_identity as _identity
from edge_sdk.build.pipeline import BuildRequest
from edge_sdk.core.profiles import resolve_profile


def identity(tmp_path: Path, version: str | None) -> tuple[int, str, str]:
    request = BuildRequest(
        model=tmp_path / "model.onnx",
        profile=resolve_profile("x86-64"),
        out=tmp_path,
        name="digits",
        version=version,
    )
    found = _identity(request)
    return found.version, found.label, found.target.name


def test_a_semantic_version_names_the_file_as_written(tmp_path: Path) -> None:
    assert identity(tmp_path, "1.2.0") == (1_002_000, "1.2.0", "digits-v1.2.0-x86-64.edgebundle")
    assert identity(tmp_path, "7") == (7, "7", "digits-v7-x86-64.edgebundle")


def test_the_next_version_follows_semantic_file_names(tmp_path: Path) -> None:
    (tmp_path / "digits-v1.2.0-x86-64.edgebundle").touch()
    (tmp_path / "digits-v1.1.9-arm64-generic.edgebundle").touch()
    (tmp_path / "digits-vnext-x86-64.edgebundle").touch()  # not a version: ignored
    assert identity(tmp_path, None) == (1_002_001, "v1.2.1", "digits-v1.2.1-x86-64.edgebundle")

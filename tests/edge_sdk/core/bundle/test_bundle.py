from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_sdk.core.bundle import write_bundle
from edge_sdk.core.bundle.layout import MAX_MANIFEST_BYTES
from edge_sdk.core.bundle.manifest import Bundle, GoldenInfo, Manifest, sha256
from edge_sdk.core.bundle.reader import read_bundle
from edge_sdk.core.bundle.versions import format_version, parse_version
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.errors import BundleError, InputError


def _bundle() -> Bundle:
    artifact = b"\x08\x07fake-onnx"
    manifest = Manifest(
        name="m",
        version=3,
        label="v3",
        profile="x86-64",
        runtime="onnx",
        precision="fp32",
        artifact="model.onnx",
        artifact_sha256=sha256(artifact),
        artifact_bytes=len(artifact),
        inputs=(TensorSpec("x", ("batch", 4), "float32", "NC"),),
        outputs=(TensorSpec("y", ("batch", 2), "float32", "NC"),),
        golden=GoldenInfo(2, 1e-3, 0.0),
        created="2026-11-25T00:00:00+00:00",
    )
    return Bundle(manifest, artifact, b"golden", None, manifest.to_bytes())


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "m.edgebundle"
    write_bundle(path, _bundle())
    back = read_bundle(path)
    assert back.manifest == _bundle().manifest
    assert back.artifact == _bundle().artifact and back.signatures is None
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_a_long_symbolic_dimension_round_trips(tmp_path: Path) -> None:
    """YOLOv8's output length as onnx's shape inference names it (about 400 characters): what
    the build writes, the reader must take back."""
    anchors = " + ".join(
        f"(floor(height/{s}) + 1)*(floor(width/{s}) + 1)" + " " * 100 for s in (8, 16, 32)
    )
    bundle = _bundle()
    manifest = replace(
        bundle.manifest, outputs=(TensorSpec("y", ("batch", 22, anchors), "float32"),)
    )
    path = tmp_path / "m.edgebundle"
    write_bundle(path, replace(bundle, manifest=manifest, manifest_bytes=manifest.to_bytes()))
    assert read_bundle(path).manifest.outputs[0].shape[2] == anchors


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", boom)
    with pytest.raises(OSError):
        write_bundle(tmp_path / "m.edgebundle", _bundle())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("text", "number"), [("7", 7), ("1.2.3", 1_002_003), ("0.10.0", 10_000)])
def test_versions_map_to_monotonic_integers(text: str, number: int) -> None:
    assert parse_version(text) == (number, text)


@pytest.mark.parametrize("text", ["0", "-1", "v1", "1.2", "latest"])
def test_bad_versions(text: str) -> None:
    with pytest.raises(InputError, match="--version"):
        parse_version(text)


def test_semver_order_is_integer_order() -> None:
    assert parse_version("1.9.9")[0] < parse_version("1.10.0")[0] < parse_version("2.0.0")[0]


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "x.edgebundle"
    path.write_bytes(b"hello")
    with pytest.raises(BundleError, match="not a zip archive"):
        read_bundle(path)


def test_missing_artifact(tmp_path: Path) -> None:
    path = tmp_path / "x.edgebundle"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", _bundle().manifest_bytes)
        zf.writestr("golden.npz", b"g")
    with pytest.raises(BundleError, match=r"model\.onnx is missing"):
        read_bundle(path)


def test_malformed_manifest(tmp_path: Path) -> None:
    path = tmp_path / "x.edgebundle"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", b'{"format_version": 1}')
    with pytest.raises(BundleError, match=r"manifest\.json is malformed"):
        read_bundle(path)


def test_unpacked_directory_round_trip_and_refusal(tmp_path: Path) -> None:
    from edge_sdk.core.bundle.reader import read_unpacked

    path = tmp_path / "m.edgebundle"
    write_bundle(path, _bundle())
    installed = tmp_path / "v3"
    with zipfile.ZipFile(path) as zf:
        zf.extractall(installed)
    assert read_unpacked(installed).manifest == _bundle().manifest
    (installed / "manifest.json").unlink()
    with pytest.raises(BundleError, match="is it an installed model version"):
        read_unpacked(installed)


def test_a_header_that_lies_about_a_size_is_refused(tmp_path: Path) -> None:
    """golden.npz's central directory claims more bytes than the member holds: the read is
    bounded by the claim and the bytes read fail their check, one BundleError."""
    path = tmp_path / "m.edgebundle"
    write_bundle(path, _bundle())
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while data[at + 46 : at + 56] != b"golden.npz":
        at = data.find(b"PK\x01\x02", at + 1)
    for field in (20, 24):  # compressed and uncompressed size
        data[at + field : at + field + 4] = (1000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="not a bundle"):
        read_bundle(path)


def test_an_oversized_manifest_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "m.edgebundle"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", b" " * (MAX_MANIFEST_BYTES + 1))
    with pytest.raises(BundleError, match="over its 1048576-byte cap"):
        read_bundle(path)


def test_installed_files_are_read_with_the_same_caps(tmp_path: Path) -> None:
    from edge_sdk.core.bundle.reader import read_unpacked

    installed = tmp_path / "v3"
    installed.mkdir()
    (installed / "manifest.json").write_bytes(b" " * (MAX_MANIFEST_BYTES + 1))
    with pytest.raises(BundleError, match="cap"):
        read_unpacked(installed)
    (installed / "manifest.json").unlink()
    (installed / "manifest.json").mkdir()
    with pytest.raises(BundleError, match="is it an installed model version"):
        read_unpacked(installed)


@given(st.integers(1, 9999), st.integers(0, 999), st.integers(0, 999))
def test_format_version_reads_back_a_semantic_version(major: int, minor: int, patch: int) -> None:
    text = f"{major}.{minor}.{patch}"
    assert format_version(parse_version(text)[0]) == text


def test_format_version_of_a_plain_integer_version_is_the_integer() -> None:
    assert format_version(7) == "7"
    assert format_version(999_999) == "999999"

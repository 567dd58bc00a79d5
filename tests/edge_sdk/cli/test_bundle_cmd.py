"""inspect / verify / sign / bench on a real signed bundle, and verify's distinct refusals."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_sdk.bundle import read_bundle, write_bundle

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def bundle(digits_build: dict[str, Any], tmp_path: Path) -> Path:
    """A private copy of the session's signed digits bundle, free to tamper with."""
    copy = tmp_path / Path(digits_build["bundle"]).name
    shutil.copy(digits_build["bundle"], copy)
    return copy


def _rewrite_member(path: Path, member: str, change: Callable[[bytes], bytes]) -> None:
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members[member] = change(members[member])
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _flip(data: bytes, at: int | None = None) -> bytes:
    i = len(data) // 2 if at is None else at
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _verify(cli: Cli, bundle: Path, root: Path) -> tuple[int, str]:
    code, _, err = cli("verify", bundle, "--trust", root)
    if code != 0:
        assert len(err.strip().splitlines()) == 1, err
    return code, err


def test_good_bundle_verifies(cli: Cli, bundle: Path, signing_keys: Path) -> None:
    code, out, _ = cli("verify", bundle, "--trust", signing_keys / "root.json", "--json")
    assert code == 0 and json.loads(out)["verified"] is True


def test_unsigned_bundle_is_refused(cli: Cli, bundle: Path, signing_keys: Path) -> None:
    b = read_bundle(bundle)
    write_bundle(bundle, b.with_signatures(None))  # type: ignore[arg-type]
    code, err = _verify(cli, bundle, signing_keys / "root.json")
    assert code == 6 and "not signed" in err


def test_wrong_key_is_refused(cli: Cli, bundle: Path, signing_keys_t2: Path) -> None:
    code, err = _verify(cli, bundle, signing_keys_t2 / "root.json")
    assert code == 6 and "does not trust" in err


def test_below_threshold_then_second_signature_passes(
    cli: Cli, digits: Path, tmp_path: Path, signing_keys_t2: Path
) -> None:
    code, out, err = cli(
        "build",
        digits / "model.onnx",
        "-p",
        "x86-64",
        "--validation",
        digits / "validation.npz",
        "--out",
        tmp_path,
        "--key",
        signing_keys_t2 / "online-1.key",
        "--json",
    )
    assert code == 0, err
    path = Path(json.loads(out)["bundle"])
    root = signing_keys_t2 / "root.json"
    code, err = _verify(cli, path, root)
    assert code == 6 and "1 of 2" in err
    assert cli("sign", path, "--key", signing_keys_t2 / "online-2.key")[0] == 0
    assert _verify(cli, path, root)[0] == 0


@pytest.mark.parametrize("member", ["model.onnx", "manifest.json", "golden.npz"])
def test_any_changed_byte_is_refused(
    cli: Cli, bundle: Path, signing_keys: Path, member: str
) -> None:
    _rewrite_member(
        bundle,
        member,
        _flip
        if member != "manifest.json"
        else (lambda d: d.replace(b'"version": 1', b'"version": 9')),
    )
    code, err = _verify(cli, bundle, signing_keys / "root.json")
    assert code == 6 and member in err


def test_edited_signed_metadata_is_refused(cli: Cli, bundle: Path, signing_keys: Path) -> None:
    _rewrite_member(
        bundle, "targets.json", lambda d: d.replace(b'"version": 1', b'"version": 2', 1)
    )
    code, err = _verify(cli, bundle, signing_keys / "root.json")
    assert code == 6 and "signature" in err


def test_trust_root_that_is_not_one(cli: Cli, bundle: Path, tmp_path: Path) -> None:
    fake = tmp_path / "root.json"
    fake.write_text("{}")
    code, err = _verify(cli, bundle, fake)
    assert code == 2 and "root.json" in err


def test_inspect_json(cli: Cli, bundle: Path) -> None:
    code, out, _ = cli("inspect", bundle, "--json")
    info = json.loads(out)
    assert code == 0 and info["signed"] is True
    assert info["manifest"]["precision"] == "int8_static"
    assert info["manifest"]["report"]["candidates"]


def test_inspect_not_a_bundle(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "x.edgebundle").write_text("nope")
    code, _, err = cli("inspect", tmp_path / "x.edgebundle")
    assert code == 5 and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("target", ["bundle", "model"])
def test_bench_json(cli: Cli, bundle: Path, digits: Path, target: str) -> None:
    path = bundle if target == "bundle" else digits / "model.onnx"
    code, out, err = cli("bench", path, "--seconds", "0.3", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert {"p50", "p95", "p99"} <= set(result["latency_ms"])
    assert result["throughput_per_s"] > 0 and result["peak_rss_mb"] > 0


def test_signed_but_inconsistent_manifest_is_refused(
    cli: Cli, bundle: Path, signing_keys: Path
) -> None:
    """A trusted key signed a manifest whose artifact hash is wrong (a broken signer): refused."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from edge_sdk.keys import load_signer
    from edge_sdk.trust import sign_files

    b = read_bundle(bundle)
    manifest = replace(b.manifest, artifact_sha256="0" * 64)
    broken = replace(b, manifest=manifest, manifest_bytes=manifest.to_bytes(), signatures=None)
    signatures = sign_files(
        broken.signed_files(),
        [load_signer(signing_keys / "online-1.key")],
        expires=datetime.now(UTC) + timedelta(days=1),
    )
    write_bundle(bundle, broken.with_signatures(signatures))
    code, err = _verify(cli, bundle, signing_keys / "root.json")
    assert code == 6 and "does not match the hash in the signed manifest" in err

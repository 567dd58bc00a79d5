"""The device-side gate: verify, load in onnxruntime, run the golden vectors."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.cli import run
from edge_sdk.core.bundle import Bundle, read_bundle, sha256, write_bundle
from edge_sdk.core.trust import sign_files
from edge_sdk.signing.keys import load_signer


def test_built_bundle_passes_its_own_golden_vectors(
    digits_build: dict[str, Any], signing_keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["selftest", digits_build["bundle"], "--trust", str(signing_keys / "root.json")])
    assert code == 0
    assert "self-test passed" in capsys.readouterr().out


def test_a_different_model_fails_the_golden_vectors(
    digits_build: dict[str, Any],
    digits: Path,
    signing_keys: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Swap in the float model, consistently re-signed: trust passes, numbers do not."""
    path = tmp_path / "swapped.edgebundle"
    shutil.copy(digits_build["bundle"], path)
    b = read_bundle(path)
    artifact = (digits / "model.onnx").read_bytes()
    manifest = replace(
        b.manifest,
        artifact_sha256=sha256(artifact),
        artifact_bytes=len(artifact),
        golden=replace(b.manifest.golden, atol=1e-6, rtol=0.0),
    )
    swapped = Bundle(manifest, artifact, b.golden, None, manifest.to_bytes())

    signatures = sign_files(
        swapped.signed_files(),
        [load_signer(signing_keys / "online-1.key")],
        expires=datetime.now(UTC) + timedelta(days=1),
    )
    write_bundle(path, swapped.with_signatures(signatures))
    code = run(["selftest", str(path), "--trust", str(signing_keys / "root.json")])
    assert code == 7
    assert "FAILED" in capsys.readouterr().out


def test_tampered_bundle_never_reaches_the_runtime(
    digits_build: dict[str, Any], signing_keys_t2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["selftest", digits_build["bundle"], "--trust", str(signing_keys_t2 / "root.json")])
    assert code == 6
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

"""Building and measuring one candidate (edge_sdk.build.candidates): the Workshop converts the
prepared source by the recipe's passes, loads the artifact as the device will open it, and
measures it against the source model's outputs; a conversion that fails is a candidate with
its error, not an exception that ends the build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converters.recipes import PREPARE
from edge_sdk import runtime
from edge_sdk.build.candidates import Workshop, runtime_settings
from edge_sdk.build.data import load_data, resolve_specs
from edge_sdk.build.onnx_model import load_source
from edge_sdk.build.pipeline import BuildRequest
from edge_sdk.core.profiles import resolve_profile
from edge_sdk.runtime.ort import open_session

# A real conversion and onnxruntime session per test: kept out of the quick loop, as the other
# modules that build are (tests/conftest.py, SLOW_MODULES).
pytestmark = pytest.mark.slow


def _workshop(tmp_path: Path, digits: Path) -> tuple[Workshop, list[np.ndarray]]:
    profile = resolve_profile("x86-64")
    request = BuildRequest(model=digits / "model.onnx", profile=profile, out=tmp_path / "out")
    _, source = load_source(request.model)
    valid = load_data(digits / "validation.npz", source.inputs, profile.image)
    specs = resolve_specs(source.inputs, valid, {})
    workdir = tmp_path / "work"
    workdir.mkdir()
    shop = Workshop(request, workdir, (specs, source.outputs), valid, valid, lambda _: None)
    shop.run_passes(request.model, PREPARE[profile.runtime], shop.prepared, {})
    source_model = runtime.OnnxModel(open_session(request.model, threads=1))
    return shop, runtime.evaluate(source_model, valid.inputs)


def test_an_fp32_candidate_is_built_loaded_and_measured(tmp_path: Path, digits: Path) -> None:
    said: list[str] = []
    shop, reference = _workshop(tmp_path, digits)
    shop.progress = said.append
    fp32 = shop.candidate("fp32", "fp32", {}, reference)
    assert fp32.error is None and fp32.fidelity is not None
    assert fp32.fidelity.cosine > 0.9999 and fp32.accuracy is not None
    assert fp32.artifact_bytes == shop.paths["fp32"].stat().st_size > 0
    assert shop.settings["fp32"] == runtime_settings(shop.profile, "fp32")
    assert "fp32" in shop.models and said == ["building candidate fp32"]


def test_a_failed_conversion_is_a_candidate_with_its_error(tmp_path: Path, digits: Path) -> None:
    shop, reference = _workshop(tmp_path, digits)
    shop.prepared.write_bytes(b"not an onnx model")
    broken = shop.candidate("fp32", "fp32", {}, reference)
    assert broken.error and broken.fidelity is None
    assert "fp32" not in shop.paths and "fp32" not in shop.models

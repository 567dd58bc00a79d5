"""The documented Python API: ``edge_sdk.build(model, profile="NAME", calibration=arrays)``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import edge_sdk
from edge_sdk.core.bundle import read_bundle
from edge_sdk.core.profiles import resolve_profile
from edge_sdk.errors import DataError, ProfileError
from edge_sdk.runtime import evaluate, load_bundle
from tests.edge_sdk.source_helpers import verify


def test_onnx_path_string_profile_and_arrays(
    digits: Path, signing_keys: Path, tmp_path: Path
) -> None:
    with np.load(digits / "calibration.npz") as c, np.load(digits / "validation.npz") as v:
        calibration, validation = c["input"], v["input"]
    result = edge_sdk.build(
        digits / "model.onnx",
        profile="jetson-nano",
        calibration=calibration,
        validation={"input": validation},
        keys=[signing_keys / "online-1.key"],
        out=tmp_path,
        version="1.2.0",
        timing_seconds=0.2,
    )
    assert result.bundle_path.parent == tmp_path and result.bundle_path.name.startswith("model-v")
    assert result.report["profile"] == "jetson-nano" and result.report["label"] == "1.2.0"
    assert result.report["calibration"]["samples"] == len(calibration)
    verify(result.bundle_path, signing_keys)


def test_estimator_in_memory_with_a_profile_object(tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    result = edge_sdk.build(
        model,
        profile=resolve_profile("x86-64"),
        validation=x.astype(np.float32),
        validation_labels=y,
        out=tmp_path,
        timing_seconds=0.2,
    )
    assert result.report["name"] == "logisticregression"
    assert result.report["accuracy"] == pytest.approx(model.score(x, y))
    probabilities = evaluate(
        load_bundle(read_bundle(result.bundle_path), threads=2), {"input": x.astype(np.float32)}
    )[0]
    np.testing.assert_allclose(probabilities, model.predict_proba(x), atol=1e-5)


def test_bad_arguments_are_our_errors(digits: Path, tmp_path: Path) -> None:
    with pytest.raises(ProfileError):
        edge_sdk.build(digits / "model.onnx", profile="no-such-board", out=tmp_path)
    with pytest.raises(DataError, match="validation_labels go with validation arrays"):
        edge_sdk.build(
            digits / "model.onnx",
            profile="x86-64",
            validation=digits / "validation.npz",
            validation_labels=np.zeros(3),
            out=tmp_path,
        )


def test_import_stays_light_and_build_is_callable_either_way() -> None:
    """``import edge_sdk`` pulls neither onnx nor numpy (a device imports it), and
    ``edge_sdk.build`` is callable before and after the pipeline module is imported."""
    code = (
        "import sys, edge_sdk\n"
        "assert 'onnx' not in sys.modules and 'numpy' not in sys.modules\n"
        "assert edge_sdk.__all__ == ['InferenceClient', '__version__', 'build', 'runtime']\n"
        "assert callable(edge_sdk.build)\n"
        "assert 'onnx' not in sys.modules and 'numpy' not in sys.modules\n"
        "import edge_sdk.build.pipeline\n"
        "assert callable(edge_sdk.build) and callable(edge_sdk.build.pipeline.build)\n"
        "from edge_sdk.build.pipeline import BuildRequest\n"
        "assert callable(edge_sdk.runtime.load) and callable(edge_sdk.runtime.load_bundle)\n"
        "assert edge_sdk.InferenceClient.__module__ == 'edge_sdk.client'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

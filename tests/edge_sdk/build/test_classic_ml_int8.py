"""Classic machine-learning models (skl2onnx's tree ensembles and linear pipelines: ai.onnx.ml
ops) built for x86-64-vnni, whose precisions start with int8: the int8 candidates are skipped
with one line that says int8 cannot help (not failed with onnxruntime's "Failed to find proper
ai.onnx domain"), and the float model is chosen."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from edge_sdk.core.bundle import read_bundle
from tests.edge_sdk.source_helpers import Cli, build_verified

PROFILE = "x86-64-vnni"


def _forest(tmp_path: Path) -> tuple[Path, Path]:
    x, y = load_diabetes(return_X_y=True)
    forest = RandomForestRegressor(n_estimators=8, max_depth=5, random_state=0).fit(x, y)
    (tmp_path / "forest.pkl").write_bytes(pickle.dumps(forest))
    np.savez(tmp_path / "forest.npz", input=x.astype(np.float32))
    return tmp_path / "forest.pkl", tmp_path / "forest.npz"


def _pipeline(tmp_path: Path) -> tuple[Path, Path]:
    x, y = load_iris(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    joblib.dump(pipeline, tmp_path / "iris.joblib")
    np.savez(tmp_path / "iris.npz", input=x.astype(np.float32), labels=y)
    return tmp_path / "iris.joblib", tmp_path / "iris.npz"


@pytest.mark.parametrize(
    ("make", "ops"),
    [(_forest, "TreeEnsembleRegressor"), (_pipeline, "Scaler, LinearClassifier")],
    ids=["random-forest", "logistic-regression-pipeline"],
)
def test_int8_candidates_are_skipped_with_the_reason_and_float_is_chosen(
    cli: Cli, signing_keys: Path, tmp_path: Path, make: Any, ops: str
) -> None:
    model, data = make(tmp_path)
    bundle = build_verified(cli, model, PROFILE, signing_keys, tmp_path, "--validation", data)
    report = read_bundle(bundle).manifest.report
    assert report["precision"] in ("fp32", "fp16")
    candidates = report["candidates"]
    int8 = [c for c in candidates if c["precision"].startswith("int8")]
    # One candidate per int8 precision of the profile, none of them a failure.
    assert sorted(c["name"] for c in int8) == ["int8_dynamic", "int8_static"]
    for c in int8:
        assert c["error"] is None and not c["chosen"], c
        assert c["skipped"].startswith("int8 not applicable: the graph has no op onnxruntime")
        assert ops in c["skipped"] and c["skipped"].endswith("float candidates only")
        assert c["reason"] == f"skipped: {c['skipped']}"
    assert all(c["skipped"] is None for c in candidates if c not in int8)
    assert not any("ai.onnx domain" in str(c["reason"]) for c in candidates)


def test_the_terminal_report_says_skipped_not_failed(
    cli: Cli, signing_keys: Path, tmp_path: Path
) -> None:
    model, data = _forest(tmp_path)
    code, out, err = cli(
        "build", model, "-p", PROFILE, "--validation", data, "--out", tmp_path,
        "--key", signing_keys / "online-1.key",
    )  # fmt: skip
    assert code == 0, err
    text = " ".join(out.split())  # rich folds long lines
    assert "int8_static: skipped: int8 not applicable" in text
    assert "int8_dynamic: skipped: int8 not applicable" in text
    assert "failed to build" not in text and "CHOSEN fp32" in text


def test_a_neural_network_gets_working_int8_candidates(
    cli: Cli, signing_keys: Path, tmp_path: Path
) -> None:
    """skl2onnx's MLP (MatMul + Add with a [1, N] bias, a Gemm once optimised) is quantizable:
    its int8 candidates are built and measured, not failed inside onnxruntime's QDQ quantizer
    ("truth value of an array ... is ambiguous" on a 2-D bias)."""
    from sklearn.neural_network import MLPClassifier

    x, y = load_iris(return_X_y=True)
    mlp = MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0)
    joblib.dump(mlp.fit(x.astype(np.float32), y), tmp_path / "mlp.joblib")
    np.savez(tmp_path / "mlp.npz", input=x.astype(np.float32), labels=y)
    bundle = build_verified(
        cli, tmp_path / "mlp.joblib", PROFILE, signing_keys, tmp_path, "--validation",
        tmp_path / "mlp.npz",
    )  # fmt: skip
    static = [
        c for c in read_bundle(bundle).manifest.report["candidates"]
        if c["name"].startswith("int8_static")
    ]  # fmt: skip
    assert static and all(c["error"] is None and c["skipped"] is None for c in static), static

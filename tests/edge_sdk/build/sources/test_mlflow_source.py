"""MLflow models as build sources: a local file-based tracking store made here, with an ONNX
model and a scikit-learn model logged and registered in it, built through the CLI into signed
bundles that verify and pass their golden vectors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_sdk.build.sources import kind_of
from edge_sdk.build.sources.mlflow import default_name, flavors
from edge_sdk.core.bundle import read_bundle
from edge_sdk.errors import EdgeSdkError
from edge_sdk.runtime import evaluate, load_bundle
from tests.edge_sdk.source_helpers import Cli, build_verified, error_line


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, digits: Path) -> Iterator[dict[str, str]]:
    """A tracking store with digits (ONNX) registered as version 1 and an iris pipeline
    (scikit-learn, MLflow's default skops format) logged in a run."""
    import mlflow
    import onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = tmp_path_factory.mktemp("mlflow")
    env = {
        # A folder MLflow creates itself, with its default experiment.
        "MLFLOW_TRACKING_URI": (root / "mlruns").as_uri(),
        # MLflow 3 keeps the file store for those who opt in; a test needs no database.
        "MLFLOW_ALLOW_FILE_STORE": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mlflow.set_tracking_uri(None)  # read the variable, not a URI an earlier test set
        x, y = load_iris(return_X_y=True)
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
        with mlflow.start_run() as run:
            mlflow.onnx.log_model(
                onnx.load(str(digits / "model.onnx")),
                name="digits",
                registered_model_name="digits",
                pip_requirements=["onnxruntime"],
            )
            mlflow.sklearn.log_model(pipeline, name="iris", pip_requirements=["scikit-learn"])
        np.savez(root / "iris.npz", input=x.astype(np.float32), labels=y)
        yield {**env, "run": run.info.run_id, "data": str(root / "iris.npz")}
        mlflow.set_tracking_uri(None)


@pytest.fixture()
def mlflow_env(store: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE", "MLFLOW_DISABLE_TELEMETRY"):
        monkeypatch.setenv(key, store[key])
    return store


def test_registered_onnx_model_builds_to_a_verified_bundle(
    cli: Cli, mlflow_env: dict[str, str], digits: Path, signing_keys: Path, tmp_path: Path
) -> None:
    bundle = build_verified(
        cli, "models:/digits/1", "jetson-nano", signing_keys, tmp_path,
        "--calibration", digits / "calibration.npz", "--validation", digits / "validation.npz",
    )  # fmt: skip
    assert bundle.name == "digits-v1-jetson-nano.edgebundle"
    report = read_bundle(bundle).manifest.report
    assert report["source"] == "models:/digits/1"
    assert any("flavor onnx" in note for note in report["notes"])


def test_run_sklearn_model_builds_and_matches_the_estimator(
    cli: Cli,
    mlflow_env: dict[str, str],
    signing_keys: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow.sklearn

    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", raising=False)  # MLflow allows
    uri = f"runs:/{mlflow_env['run']}/iris"
    data = mlflow_env["data"]
    bundle = build_verified(cli, uri, "x86-64", signing_keys, tmp_path, "--validation", data)
    assert bundle.name == "iris-v1-x86-64.edgebundle"
    b = read_bundle(bundle)
    assert b.manifest.report["source"] == uri
    assert [o.name for o in b.manifest.outputs] == ["probabilities", "label"]
    with np.load(data) as d:
        x, labels = d["input"], d["labels"]
    probabilities, label = evaluate(load_bundle(b, threads=2), {"input": x})
    estimator = mlflow.sklearn.load_model(uri)
    np.testing.assert_allclose(probabilities, estimator.predict_proba(x), atol=1e-5)
    assert np.array_equal(label, estimator.predict(x))
    assert b.manifest.report["accuracy"] == pytest.approx(np.mean(label == labels))


def test_sklearn_model_is_refused_where_mlflow_forbids_unpickling(
    cli: Cli, mlflow_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    uri = f"runs:/{mlflow_env['run']}/iris"
    code, out, err = cli("build", uri, "-p", "x86-64", "--out", tmp_path)
    assert code == 2 and out == ""
    assert "MLFLOW_ALLOW_PICKLE_DESERIALIZATION" in error_line(err)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("uri", ["models:/digits/7", "models:/nothing/1", "runs:/0123abc/model"])
def test_a_model_mlflow_does_not_have_is_one_line(
    cli: Cli, mlflow_env: dict[str, str], tmp_path: Path, uri: str
) -> None:
    code, _, err = cli("build", uri, "-p", "x86-64", "--out", tmp_path)
    assert code == 2
    assert f"MLflow cannot fetch {uri}" in error_line(err)


def test_missing_mlflow_names_the_extra(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an install without it looks like
    code, _, err = cli("build", "models:/digits/1", "-p", "x86-64", "--out", tmp_path)
    assert code == 3
    line = error_line(err)
    assert "[mlflow]" in line and "pip install" in line


def test_default_names() -> None:
    assert default_name("models:/digits/3") == "digits"
    assert default_name("models:/digits@champion") == "digits"
    assert default_name("runs:/abc123/classifier") == "classifier"
    assert default_name("runs:/abc123/nested/deeper") == "deeper"
    assert default_name("runs:/abc123") == "model"


@given(st.sampled_from(["models:/", "runs:/", ""]), st.text(max_size=80))
def test_any_model_argument_is_classified(prefix: str, rest: str) -> None:
    """Whatever a user types as MODEL: a kind (or None for a file build reads itself), and for
    an MLflow URI a name to check, never an exception."""
    text = prefix + rest
    kind = kind_of(text)
    assert kind in (None, "mlflow", "sklearn", "pmml", "tflite")
    if prefix:
        assert kind == "mlflow" and isinstance(default_name(text), str)


@given(st.binary(max_size=2048) | st.text(max_size=512).map(str.encode))
def test_any_mlmodel_file_is_read_or_refused(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    folder = tmp_path_factory.mktemp("mlmodel")
    (folder / "MLmodel").write_bytes(raw)
    try:
        found = flavors(folder, "models:/x/1")
    except EdgeSdkError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(found, dict)

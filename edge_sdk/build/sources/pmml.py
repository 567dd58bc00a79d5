"""PMML files as build sources: read into a scikit-learn estimator by sklearn-pmml-model,
converted by skl2onnx, and the ONNX model checked against a PMML scorer (pypmml, on Java) on the
build's validation data before anything else is built from it.

Inputs are the PMML's continuous DataFields, in their DataDictionary order, as one float32
array ``input`` of shape [batch, fields]. A classifier's first output is its probabilities, one
column per target value in the DataField's order. What sklearn-pmml-model reads and skl2onnx
converts builds (regression models: logistic, linear, ridge; and the others that pass the
scorer check); categorical inputs do not, and neither do tree models while sklearn-pmml-model's
tree reader fails under NumPy 2 (its node accessor uses the removed ``NPY_DEFAULT``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_sdk.build.sources import Converted, agreement, check_data, first_line, require
from edge_sdk.core.userfile import MIB, read_user_file
from edge_sdk.errors import BuildError, ModelFileError, UnsupportedError

if TYPE_CHECKING:
    from edge_sdk.build.pipeline import BuildRequest

EXTRA = "pmml"
WHAT = "PMML sources"
MAX_PMML = 512 * MIB  # a forest of a few thousand trees is tens of MiB of XML
SCORER = "the PMML scorer pypmml"


def read_pmml(path: Path) -> tuple[Any, list[str], bytes]:
    """The estimator a PMML file describes, its input fields in order, and the file's bytes."""
    from xml.etree.ElementTree import ParseError

    raw = read_user_file(path, "PMML file", MAX_PMML, ModelFileError)
    require("skl2onnx", "sklearn", "scikit-learn sources")
    require("sklearn_pmml_model", EXTRA, WHAT)
    from sklearn_pmml_model.auto_detect import auto_detect_estimator

    try:
        estimator = auto_detect_estimator(pmml=io.BytesIO(raw))
        target = estimator.target_field
        fields = [
            (name, e)
            for name, e in estimator.fields.items()
            if e is not target and e.tag == "DataField"
        ]
    except ParseError as e:
        raise ModelFileError(f"{path} is not well-formed XML: {e}") from e
    except RecursionError as e:
        raise ModelFileError(f"{path} nests too deep to read") from e
    except Exception as e:  # sklearn-pmml-model raises bare Exception for what it cannot read
        first = first_line(e)
        if "nsupported" in first:
            raise UnsupportedError(f"{path}: sklearn-pmml-model cannot read it: {first}") from e
        raise ModelFileError(f"{path} is not a PMML model sklearn-pmml-model reads: {first}") from e
    categorical = [name for name, e in fields if e.get("optype") != "continuous"]
    if categorical:
        raise UnsupportedError(
            f"{path}: input fields {', '.join(categorical)} are not continuous; builds from "
            "PMML take continuous inputs only"
        )
    if not fields:
        raise ModelFileError(f"{path} has no input fields")
    estimator.n_features_in_ = len(fields)
    return estimator, [name for name, _ in fields], raw


def _register(estimator: Any, path: Path) -> None:
    """Convert sklearn-pmml-model's classes with the converter of the scikit-learn class each
    extends (PMMLLogisticRegression is a LogisticRegression with its coefficients set)."""
    # skl2onnx's public update_registered_converter wants the converter functions themselves;
    # the alias table is where it looks a class up, so the alias is what is shared.
    from skl2onnx._supported_operators import sklearn_operator_name_map

    kind = type(estimator)
    parent = next((c for c in kind.__mro__[1:] if c in sklearn_operator_name_map), None)
    if parent is None:
        raise UnsupportedError(f"{path}: skl2onnx has no converter for {kind.__name__}")
    sklearn_operator_name_map.setdefault(kind, sklearn_operator_name_map[parent])


def score(raw: bytes, columns: list[str], x: np.ndarray, estimator: Any) -> np.ndarray:
    """The PMML scorer's answer for ``x``: class probabilities in ``classes_`` order, or the
    predicted value, as [samples, columns] float64."""
    require("pypmml", EXTRA, WHAT)
    pandas = require("pandas", EXTRA, WHAT)
    from pypmml import Model

    try:
        model = Model.fromBytes(raw)
    except Exception as e:  # py4j cannot start the JVM, or the scorer refuses the file
        raise UnsupportedError(
            f"{SCORER} could not score the file (it runs on Java 8+: is `java` installed and "
            f"on PATH?): {first_line(e)}"
        ) from e
    try:
        frame = model.predict(pandas.DataFrame(x.astype(np.float64), columns=columns))
    except Exception as e:
        raise BuildError(f"{SCORER} failed on the validation data: {first_line(e)}") from e
    if hasattr(estimator, "classes_"):
        wanted = [f"probability_{c}" for c in estimator.classes_]
    else:
        wanted = [f"predicted_{model.targetName}"]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise BuildError(
            f"{SCORER} gives no {', '.join(missing)} (it gives {', '.join(frame.columns)})"
        )
    return np.asarray(frame[wanted].to_numpy(), dtype=np.float64).reshape(len(x), -1)


def convert_pmml(request: BuildRequest, workdir: Path) -> Converted:
    from edge_sdk.build.onnx_model import load_source
    from edge_sdk.build.sources import run_onnx
    from edge_sdk.build.sources.sklearn import INPUT, to_onnx

    path = request.model
    estimator, columns, raw = read_pmml(path)
    _register(estimator, path)
    onnx = workdir / f"{path.stem}.onnx"
    to_onnx(estimator, onnx, request.profile.opset)
    _, described = load_source(onnx)
    data = check_data(request, described.inputs)
    x = data.inputs[INPUT]
    expected = score(raw, columns, x, estimator)
    got = run_onnx(onnx, {INPUT: x})[0].reshape(len(x), -1)
    if got.shape != expected.shape:
        raise BuildError(
            f"{path}: the ONNX conversion gives outputs of shape {got.shape} where {SCORER} "
            f"gives {expected.shape}"
        )
    notes = (
        f"read by sklearn-pmml-model as {type(estimator).__name__}, converted by skl2onnx; "
        f"input columns: {', '.join(columns)}",
        agreement(str(path), SCORER, [expected], [got], request),
    )
    return Converted(onnx, path.stem, str(path), notes)

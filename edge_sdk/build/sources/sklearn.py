"""scikit-learn estimators and pipelines as build sources, through skl2onnx.

A ``.joblib`` / ``.pkl`` file is unpickled to get the estimator back, and unpickling runs
whatever code the file names (as ``torch.load`` does): build only from files you made or
trust. The converted graph takes one float32 input, ``input`` of shape [batch, features];
a classifier's class probabilities are its first output (what the build's fidelity and
accuracy read), then its integer labels where the classes are integers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_sdk.build.sources import Converted, agreement, check_data, first_line, require, run_onnx
from edge_sdk.core.userfile import check_regular_file
from edge_sdk.errors import BuildError, ModelFileError, UnsupportedError

if TYPE_CHECKING:
    from edge_sdk.build.pipeline import BuildRequest

INPUT = "input"
EXTRA = "sklearn"
WHAT = "scikit-learn sources"


def load_estimator(path: Path) -> Any:
    """The estimator pickled in ``path`` (joblib or plain pickle): the user's own file."""
    check_regular_file(path, "model file", ModelFileError)
    joblib = require("joblib", EXTRA, WHAT)
    require("skl2onnx", EXTRA, WHAT)
    try:
        estimator = joblib.load(path)
    except ModuleNotFoundError as e:
        raise ModelFileError(
            f"{path} needs the module {e.name!r} to unpickle; install what the model was "
            "trained with"
        ) from e
    except Exception as e:  # pickle raises anything the stream's bytes ask for
        raise ModelFileError(
            f"{path} is not a readable joblib or pickle file: {first_line(e, kind=True)}"
        ) from e
    check_estimator(estimator, str(path))
    return estimator


def check_estimator(estimator: Any, where: str) -> None:
    from sklearn.base import BaseEstimator
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not isinstance(estimator, BaseEstimator):
        raise ModelFileError(
            f"{where} holds a {type(estimator).__module__}.{type(estimator).__qualname__}, "
            "not a scikit-learn estimator or pipeline"
        )
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise ModelFileError(
            f"{where} holds an unfitted {type(estimator).__name__}; fit it before building"
        ) from None
    if not isinstance(getattr(estimator, "n_features_in_", None), int):
        raise UnsupportedError(
            f"{where}: {type(estimator).__name__} does not say how many features it takes "
            "(n_features_in_); builds need one numeric feature array"
        )


def ml_opset(opset: int) -> int:
    """The ai.onnx.ml opset that ships with ONNX opset ``opset`` (2 up to 15, then 3)."""
    return 2 if opset < 16 else 3


def to_onnx(estimator: Any, path: Path, opset: int) -> list[str]:
    """Write ``estimator`` as ONNX to ``path``; the names of its outputs."""
    import onnx
    from sklearn.base import is_classifier

    skl2onnx = require("skl2onnx", EXTRA, WHAT)
    from skl2onnx.common.data_types import FloatTensorType

    target = min(opset, skl2onnx.get_latest_tested_opset_version())
    # ZipMap turns probabilities into a list of dicts, which no edge runtime feeds on.
    options = {"zipmap": False} if is_classifier(estimator) else None
    try:
        model = skl2onnx.to_onnx(
            estimator,
            initial_types=[(INPUT, FloatTensorType([None, estimator.n_features_in_]))],
            options=options,
            target_opset={"": target, "ai.onnx.ml": ml_opset(target)},
        )
    except Exception as e:  # MissingShapeCalculator, MissingConverter, NotImplementedError
        raise UnsupportedError(
            f"skl2onnx cannot convert {type(estimator).__name__}: {first_line(e, kind=True)}"
        ) from e
    outputs = list(model.graph.output)
    floats = [o for o in outputs if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT]
    ints = [o for o in outputs if o.type.tensor_type.elem_type == onnx.TensorProto.INT64]
    if not floats:
        raise UnsupportedError(f"{type(estimator).__name__} converts to no float output")
    # Scores first: the build reads the first output as class scores. String labels have no
    # tensor type on the device; the scores' column order is the estimator's classes_.
    del model.graph.output[:]
    model.graph.output.extend(floats + ints)
    path.write_bytes(model.SerializeToString())
    return [o.name for o in floats + ints]


def reference_outputs(estimator: Any, x: np.ndarray) -> np.ndarray:
    """What the converted model's first output should equal, computed by scikit-learn."""
    for method in ("predict_proba", "decision_function", "predict", "transform"):
        if hasattr(estimator, method):  # hasattr is False where a method is off (SVC)
            result = np.asarray(getattr(estimator, method)(x), dtype=np.float64)
            return result.reshape(len(x), -1)
    raise UnsupportedError(f"{type(estimator).__name__} has no prediction method")


def convert_estimator(
    estimator: Any, request: BuildRequest, workdir: Path, *, name: str, source: str, what: str
) -> Converted:
    """Convert, then check the ONNX model against ``estimator`` on the build's data."""
    from edge_sdk.build.onnx_model import load_source

    path = workdir / f"{name}.onnx"
    to_onnx(estimator, path, request.profile.opset)
    _, described = load_source(path)
    data = check_data(request, described.inputs)
    x = data.inputs[INPUT]
    expected = reference_outputs(estimator, x)
    got = run_onnx(path, {INPUT: x})[0].reshape(len(x), -1)
    if expected.shape[1] == 1 and got.shape[1] == 2:  # a binary decision function: one column
        got = got[:, 1:]
    if expected.shape != got.shape:
        raise BuildError(
            f"the ONNX conversion of {type(estimator).__name__} gives outputs of shape "
            f"{got.shape} where {what} gives {expected.shape}"
        )
    import skl2onnx

    notes = (
        f"converted from {type(estimator).__name__} by skl2onnx {skl2onnx.__version__}",
        agreement(source, what, [expected], [got], request),
    )
    return Converted(path, name, source, notes)


def convert_file(request: BuildRequest, workdir: Path) -> Converted:
    estimator = load_estimator(request.model)
    return convert_estimator(
        estimator,
        request,
        workdir,
        name=request.model.stem,
        source=str(request.model),
        what="the scikit-learn model",
    )

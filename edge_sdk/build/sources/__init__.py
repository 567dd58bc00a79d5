"""Sources that are not ONNX files: an MLflow model URI, a pickled scikit-learn estimator or
pipeline, a PMML file, a .tflite file. Each becomes an ONNX file first (skl2onnx; tf2onnx for
TFLite), checked against the model it came from on the build's own data, and then takes the
ordinary ONNX route.

This module only decides; the converters live in ``sklearn``, ``pmml``, ``mlflow`` and
``tflite``, and are imported when a source needs them (their dependencies are extras).
"""

from __future__ import annotations

import contextlib
import importlib
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_sdk.errors import BuildError, UnsupportedError

if TYPE_CHECKING:
    from edge_sdk.build.data import Dataset
    from edge_sdk.build.pipeline import BuildRequest
    from edge_sdk.core.tensors import TensorSpec

MLFLOW_SCHEMES = ("models:/", "runs:/")
SKLEARN_SUFFIXES = (".joblib", ".pkl", ".pickle")
PMML_SUFFIXES = (".pmml",)
TFLITE_SUFFIXES = (".tflite",)
# How many validation samples the conversion is checked on: enough to see a wrong mapping,
# few enough that a JVM-backed PMML scorer answers in a second.
CHECK_SAMPLES = 1024
# A faithful conversion differs from its source by float32 rounding, far below this (relative
# to the largest output value, or absolute below 1).
MAX_RELATIVE_ERROR = 1e-3
_DISTRIBUTION = "edgesdk-fleet"


def kind_of(model: Path | str) -> str | None:
    """ "mlflow", "sklearn", "pmml", "tflite", or None for a source ``build`` reads directly."""
    text = str(model)
    if text.startswith(MLFLOW_SCHEMES):
        return "mlflow"
    suffix = Path(text).suffix.lower()
    if suffix in SKLEARN_SUFFIXES:
        return "sklearn"
    if suffix in PMML_SUFFIXES:
        return "pmml"
    if suffix in TFLITE_SUFFIXES:
        return "tflite"
    return None


def first_line(e: BaseException, *, kind: bool = False, limit: int = 300) -> str:
    """A foreign exception as part of one line: its first line, cut at ``limit``; with
    ``kind``, prefixed by its type (where the message alone says nothing, as pickle's)."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else ""
    line = line if len(line) <= limit else line[: limit - 3] + "..."
    if not line:
        return type(e).__name__
    return f"{type(e).__name__}: {line}" if kind else line


def require(module: str, extra: str, what: str) -> Any:
    """Import an optional dependency, or one line naming the extra that installs it (exit 3)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        try:
            names = metadata.packages_distributions().get("edge_sdk") or [_DISTRIBUTION]
        except Exception:  # a broken site-packages must not turn advice into a traceback
            names = [_DISTRIBUTION]
        raise UnsupportedError(
            f"{what} need {e.name or module}, which is not installed: "
            f"pip install '{names[0]}[{extra}]'"
        ) from e


@dataclass(frozen=True)
class Converted:
    """An ONNX file made from a foreign source, and what the build report says about it."""

    onnx: Path
    name: str
    source: str
    notes: tuple[str, ...] = ()


def check_data(request: BuildRequest, specs: Sequence[TensorSpec]) -> Dataset:
    """The samples a conversion is checked on: the validation data, else the calibration
    data, else the synthetic samples the build would use."""
    from edge_sdk.build.data import check_dataset, load_data, resolve_specs, synthetic
    from edge_sdk.build.pipeline import SYNTHETIC_SAMPLES

    path = request.validation or request.calibration
    if path is None:
        return synthetic(resolve_specs(specs, None, request.input_shapes), SYNTHETIC_SAMPLES, 1)
    dataset = load_data(path, specs, request.profile.image)
    check_dataset(dataset, resolve_specs(specs, dataset, request.input_shapes))
    return dataset.take(CHECK_SAMPLES)


def agreement(
    source: str,
    what: str,
    reference: Sequence[np.ndarray],
    converted: Sequence[np.ndarray],
    request: BuildRequest,
) -> str:
    """Refuse a conversion that changed the model beyond the profile's accuracy budget, or
    beyond float32 rounding (cosine alone cannot see a scalar output move); the note for the
    report when it did not."""
    from edge_sdk.core.fidelity import compare

    fidelity = compare(reference, converted, request.first_output)
    budget = request.profile.accuracy_budget
    top1 = fidelity.top1_agreement
    samples = len(reference[0])
    scale = max((float(np.max(np.abs(r))) for r in reference if r.size), default=0.0)
    shown = f"cosine {fidelity.cosine:.6f}, max abs error {fidelity.max_abs_error:.2g}"
    if top1 is not None:
        shown = f"top-1 agreement {top1:.4f}, {shown}"
    if (
        fidelity.cosine < budget.min_cosine
        or (top1 is not None and 1 - top1 > budget.max_top1_disagreement)
        or fidelity.max_abs_error > MAX_RELATIVE_ERROR * max(scale, 1.0)
    ):
        raise BuildError(
            f"{source}: the ONNX conversion disagrees with {what} on {samples} samples "
            f"({shown}); this model does not convert faithfully"
        )
    return f"ONNX conversion checked against {what} on {samples} samples: {shown}"


def convert(request: BuildRequest, workdir: Path) -> Converted:
    kind = kind_of(request.model)
    if kind == "mlflow":
        from edge_sdk.build.sources.mlflow import convert_mlflow

        return convert_mlflow(request, workdir)
    if kind == "sklearn":
        from edge_sdk.build.sources.sklearn import convert_file

        return convert_file(request, workdir)
    if kind == "pmml":
        from edge_sdk.build.sources.pmml import convert_pmml

        return convert_pmml(request, workdir)
    if kind == "tflite":
        from edge_sdk.build.sources.tflite import convert_tflite

        return convert_tflite(request, workdir)
    raise AssertionError(f"{request.model} needs no conversion")


@contextlib.contextmanager
def converted_request(request: BuildRequest) -> Iterator[BuildRequest]:
    """``request`` with its foreign source replaced by the ONNX file made from it, which lives
    as long as the context."""
    with tempfile.TemporaryDirectory(prefix="edge-sdk-source-") as tmp:
        c = convert(request, Path(tmp))
        yield replace(
            request,
            model=c.onnx,
            name=request.name if request.name is not None else c.name,
            source_label=c.source,
            source_notes=(*request.source_notes, *c.notes),
        )


def run_onnx(path: Path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The converted model's outputs in onnxruntime, as the build will run it."""
    from edge_sdk.runtime.ort import open_session

    session = open_session(path, threads=2)
    return [np.asarray(o) for o in session.run(None, inputs)]

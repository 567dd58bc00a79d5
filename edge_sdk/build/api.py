"""The Python API: ``edge_sdk.build(model, profile="jetson-orin", calibration=arrays, ...)``.

The same build as ``edge-sdk build``, with Python values where the command line takes files:
the model is a path (.onnx, .joblib/.pkl, .pmml, a Keras file or SavedModel), an MLflow URI
(``models:/NAME/VERSION``, ``runs:/ID/PATH``), or a fitted scikit-learn estimator; the profile
a name, a .toml path or a ``HardwareProfile``; data a path, an array, or a dict of arrays.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.build.data import LABELS_KEY
from edge_sdk.build.pipeline import BuildRequest, BuildResult, Progress
from edge_sdk.build.pipeline import build as run_build
from edge_sdk.build.sources import kind_of
from edge_sdk.core.profiles import HardwareProfile, resolve_profile
from edge_sdk.errors import DataError

Data = str | Path | np.ndarray | Mapping[str, np.ndarray] | None


def _input_name(model: Path) -> str:
    """The input a bare array feeds: an ONNX file's only input; ``input`` for the sources
    edge-sdk converts itself (scikit-learn, PMML, MLflow scikit-learn models)."""
    if model.suffix.lower() != ".onnx" or kind_of(model) is not None:
        return "input"
    from edge_sdk.build.onnx_model import load_source

    _, source = load_source(model)
    if len(source.inputs) != 1:
        names = [s.name for s in source.inputs]
        raise DataError(f"{model} has inputs {names}; pass a dict of arrays keyed by name")
    return source.inputs[0].name


def _data_file(
    data: Data, labels: np.ndarray | None, model: Path, folder: Path, what: str
) -> Path | None:
    if data is None or isinstance(data, str | Path):
        if labels is not None:
            raise DataError(f"{what}_labels go with {what} arrays; put 'labels' in the .npz")
        return None if data is None else Path(data)
    arrays = (
        {_input_name(model): np.asarray(data)}
        if isinstance(data, np.ndarray)
        else {str(k): np.asarray(v) for k, v in data.items()}
    )
    if labels is not None:
        arrays[LABELS_KEY] = np.asarray(labels)
    path = folder / f"{what}.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def build(
    model: str | Path | Any,
    profile: str | Path | HardwareProfile,
    *,
    out: str | Path = "out",
    calibration: Data = None,
    validation: Data = None,
    validation_labels: np.ndarray | None = None,
    name: str | None = None,
    version: str | None = None,
    label: str | None = None,
    keys: Sequence[str | Path] = (),
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    force: bool = False,
    progress: Progress = lambda _: None,
    **options: Any,
) -> BuildResult:
    """Build one signed (with ``keys``) bundle of ``model`` for ``profile`` into ``out``; its
    path and report. ``options`` takes BuildRequest's other fields (``timing_seconds``)."""
    hardware = profile if isinstance(profile, HardwareProfile) else resolve_profile(str(profile))
    with tempfile.TemporaryDirectory(prefix="edge-sdk-api-") as tmp:
        folder = Path(tmp)
        if isinstance(model, str | Path):
            source = Path(model)
        else:  # an estimator in memory: it goes the way of the user's own .joblib file
            import joblib

            from edge_sdk.build.sources.sklearn import check_estimator

            check_estimator(model, "the model passed to edge_sdk.build")
            name = name if name is not None else type(model).__name__.lower()
            source = folder / f"{name}.joblib"
            joblib.dump(model, source)
        request = BuildRequest(
            model=source,
            profile=hardware,
            out=Path(out),
            calibration=_data_file(calibration, None, source, folder, "calibration"),
            validation=_data_file(validation, validation_labels, source, folder, "validation"),
            name=name,
            version=version,
            label=label,
            keys=tuple(Path(k) for k in keys),
            input_shapes=dict(input_shapes or {}),
            force=force,
            **options,
        )
        return run_build(request, progress)

"""Keras models (.keras, .h5) and SavedModels as build sources for TFLite profiles.

They take TensorFlow's own route (SavedModel, then TFLiteConverter), with no ONNX step. The
source model itself, run in TensorFlow, is the reference that candidates are measured against.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.build.onnx_model import SourceModel
from edge_sdk.core.tensors import Dim, TensorSpec, guess_layout
from edge_sdk.errors import ModelFileError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KERAS_SUFFIXES = (".keras", ".h5")


def is_tensorflow_source(path: Path) -> bool:
    return path.suffix.lower() in KERAS_SUFFIXES or (path / "saved_model.pb").is_file()


def _spec(name: str, shape: Any, dtype: Any) -> TensorSpec:
    dims: tuple[Dim, ...] = tuple(
        ("batch" if axis == 0 else "?") if d is None else int(d) for axis, d in enumerate(shape)
    )
    return TensorSpec(name, dims, np.dtype(getattr(dtype, "name", dtype)).name, guess_layout(dims))


class TensorFlowModel:
    """The source model in TensorFlow: its serving signature, fed by name."""

    batch_capable = True

    def __init__(self, signature: Any, output_keys: list[str]) -> None:
        self.signature = signature
        self.output_keys = output_keys

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        import tensorflow as tf

        result = self.signature(**{k: tf.constant(v) for k, v in feeds.items()})
        return [np.asarray(result[k]) for k in self.output_keys]


def load_tensorflow_source(path: Path, saved_model: Path) -> tuple[TensorFlowModel, SourceModel]:
    """Load a Keras file or a SavedModel, write it as a SavedModel to ``saved_model`` (the
    first step of its TFLite recipes), and describe it."""
    import tensorflow as tf

    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if path.suffix.lower() in KERAS_SUFFIXES:
        import keras

        try:
            model = keras.models.load_model(str(path), compile=False)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelFileError(f"{path} is not a readable Keras model: {first}") from e
        try:
            model.export(str(saved_model), verbose=False)
        except Exception as e:
            raise ModelFileError(f"{path} cannot be exported as a SavedModel: {e}") from e
        size = path.stat().st_size
    else:
        shutil.copytree(path, saved_model)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    try:
        signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    except Exception as e:
        raise ModelFileError(f"{path} has no 'serving_default' signature to build from") from e
    _, inputs = signature.structured_input_signature
    outputs = signature.structured_outputs
    in_specs = tuple(_spec(k, v.shape, v.dtype) for k, v in sorted(inputs.items()))
    out_keys = sorted(outputs)
    out_specs = tuple(_spec(k, outputs[k].shape, outputs[k].dtype) for k in out_keys)
    return TensorFlowModel(signature, out_keys), SourceModel(
        path=path,
        size_bytes=size,
        opset=0,
        inputs=in_specs,
        outputs=out_specs,
        producer="tensorflow",
    )

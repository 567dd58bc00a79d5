"""The build: a source model and a hardware profile in, measured candidates, one signed bundle
out (``edge-sdk build``).

    pipeline.py    the stages: load, convert, measure, judge, pack, sign
    search.py      which candidate wins: the pure decision core (no I/O, no runtime)
    data.py        calibration and validation data (.npz, image folders, synthetic)
    onnx_model.py  reading a source ONNX file and describing its inputs and outputs
    sources/       non-ONNX models: scikit-learn, PMML, MLflow, TFLite, Keras, PyTorch

Importing this package is light: the pipeline (onnx, onnxruntime, the converters) loads when a
build runs. The package itself takes the Python API's call, ``edge_sdk.build(model, profile=...)``
(``edge_sdk/build/api.py``), because Python binds it to the attribute ``edge_sdk.build``.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_sdk.build.pipeline import BuildResult


class _CallableModule(types.ModuleType):
    """``edge_sdk.build(...)``: the package forwards the call to ``edge_sdk.build.api.build``."""

    def __call__(self, *args: Any, **kwargs: Any) -> BuildResult:
        from edge_sdk.build.api import build as api_build

        return api_build(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

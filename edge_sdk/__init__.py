"""edge-sdk: build, deliver and operate models on edge devices.

    import edge_sdk
    result = edge_sdk.build("model.onnx", profile="jetson-orin", calibration=arrays)

Nothing heavy is imported here: a device imports ``edge_sdk`` without onnx or TensorFlow, and
``edge_sdk.build.pipeline`` (``edge_sdk/build/api.py``) loads the build pipeline when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "build"]


def __getattr__(name: str) -> Any:
    # ``edge_sdk.build`` is also the build package, which Python binds to this attribute when it
    # is imported; that package is callable (edge_sdk/build/__init__.py), so either way the
    # call works.
    if name == "build":
        return importlib.import_module("edge_sdk.build")
    raise AttributeError(f"module 'edge_sdk' has no attribute {name!r}")

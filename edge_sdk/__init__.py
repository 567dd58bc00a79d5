"""edge-sdk: build, deliver and operate models on edge devices.

The public Python API::

    import edge_sdk

    result = edge_sdk.build("model.onnx", profile="jetson-orin", calibration=arrays)
    model = edge_sdk.runtime.load_bundle(result.bundle_path)     # run it as a device would
    client = edge_sdk.InferenceClient("http://127.0.0.1:8470")   # a device's inference API

Nothing heavy is imported here: a device imports ``edge_sdk`` without onnx, numpy or
TensorFlow. Each name below loads its module when first used.

Where things live (each subpackage's docstring lists its modules):

    core/      what device and host share: bundle format, golden vectors, profiles, trust
               decisions, the wire protocol, topics, atomic files (no heavy dependency)
    runtime/   one way to run any artifact (ONNX, TFLite), timing, onnxruntime settings
    build/     ``edge-sdk build``: the pipeline, candidate search, data, sources
    signing/   the operator's keys and the fleet's TUF repository
    fleet/     operating the fleet over its broker: publish, assign, roll out, status, bench
    broker/    the fleet's Mosquitto: configuration, PKI, enrolment, revocation
    cli/       ``edge-sdk``: parse, call, render; nothing imports it
    client.py  the inference API's client (standard library only)
    errors.py  every error, grouped by what the caller does
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["InferenceClient", "__version__", "build", "runtime"]


def __getattr__(name: str) -> Any:
    # ``edge_sdk.build`` is also the build package, which Python binds to this attribute when it
    # is imported; that package is callable (edge_sdk/build/__init__.py), so either way the
    # call works. ``runtime`` is a subpackage too; both load on first use.
    if name in ("build", "runtime"):
        return importlib.import_module(f"edge_sdk.{name}")
    if name == "InferenceClient":
        return importlib.import_module("edge_sdk.client").InferenceClient
    raise AttributeError(f"module 'edge_sdk' has no attribute {name!r}")

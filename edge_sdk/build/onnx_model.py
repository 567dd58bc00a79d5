"""Reading a source ONNX model: catch every way a file can fail to be one, and describe its I/O."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import helper

from edge_sdk.core.tensors import Dim, TensorSpec, guess_layout
from edge_sdk.errors import ModelFileError


@dataclass(frozen=True)
class SourceModel:
    path: Path
    size_bytes: int
    opset: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    producer: str


def _dims(value_info: onnx.ValueInfoProto) -> tuple[Dim, ...]:
    dims: list[Dim] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or "?")
    return tuple(dims)


def _spec(value_info: onnx.ValueInfoProto) -> TensorSpec:
    elem = value_info.type.tensor_type.elem_type
    dtype = str(helper.tensor_dtype_to_np_dtype(elem)) if elem else "unknown"
    shape = _dims(value_info)
    return TensorSpec(value_info.name, shape, dtype, guess_layout(shape))


def describe(model: onnx.ModelProto, path: Path) -> SourceModel:
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_spec(i) for i in model.graph.input if i.name not in initializers)
    outputs = tuple(_spec(o) for o in model.graph.output)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return SourceModel(
        path=path,
        size_bytes=path.stat().st_size,
        opset=opset,
        inputs=inputs,
        outputs=outputs,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
    )


def load_source(path: Path) -> tuple[onnx.ModelProto, SourceModel]:
    """Load and check a model file; every failure is one ModelFileError line naming the file."""
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if not path.is_file():
        raise ModelFileError(f"model path {path} is not a file")
    if path.suffix.lower() != ".onnx":
        hint = " (Keras, SavedModel and PyTorch sources come with TFLite support)"
        raise ModelFileError(f"{path} is not an .onnx file{hint}; export the model to ONNX first")
    try:
        model = onnx.load(str(path))
    except DecodeError as e:
        raise ModelFileError(
            f"{path} is not a readable ONNX model (truncated or not ONNX): {e}"
        ) from e
    except OSError as e:
        raise ModelFileError(f"cannot read {path}: {e}") from e
    except Exception as e:  # onnx raises bare exceptions for external-data problems
        raise ModelFileError(f"{path} cannot be loaded as ONNX: {e}") from e
    if not model.graph.node:
        raise ModelFileError(f"{path} holds no ONNX graph (empty or truncated file)")
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid graph"
        raise ModelFileError(f"{path} is not a valid ONNX model: {first}") from e
    source = describe(model, path)
    if not source.inputs:
        raise ModelFileError(f"{path} has no graph inputs to feed")
    return model, source

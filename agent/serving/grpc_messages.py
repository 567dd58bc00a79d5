"""The Open Inference Protocol's gRPC messages and the arrays they carry, without a server.

A ``ModelInferRequest``'s inputs come as ``raw_input_contents`` (little-endian bytes, one entry
per input) or in the typed ``contents`` field of their datatype, and are judged from their
declared datatype and shape (the shared :mod:`agent.serving.oip` core) before any array is
made; outputs always go as ``raw_output_contents``, as Triton answers. Pure: a
:class:`agent.serving.codec.RequestError` for anything malformed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from agent.protos import grpc_predict_v2_pb2 as pb
from agent.serving import codec, oip, oip_tensors
from agent.update.selftest import LoadedVersion
from edge_sdk.core.tensors import TensorSpec

_LITTLE = sys.byteorder == "little"
# The typed field of InferTensorContents each datatype's values travel in (FP16 has none).
CONTENTS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def decode_infer(
    request: pb.ModelInferRequest,
    specs: Sequence[TensorSpec],
    limits: codec.Limits = codec.DEFAULT_LIMITS,
) -> dict[str, np.ndarray]:
    """A ModelInferRequest's inputs as arrays, checked like every other request (the shared
    :mod:`agent.serving.oip` core, then :func:`agent.serving.codec.check`); each tensor judged from
    its
    declared datatype and shape before its data is touched. Pure: a
    :class:`codec.RequestError` for anything malformed."""
    wanted = {s.name: s for s in specs}
    inputs = request.inputs
    if len(inputs) > len(wanted):
        raise codec.RequestError(
            422, f"request has {len(inputs)} inputs; this model takes {len(wanted)}"
        )
    raw = request.raw_input_contents
    if raw and len(raw) != len(inputs):
        raise codec.RequestError(
            400,
            f"raw_input_contents holds {len(raw)} entries for {len(inputs)} inputs: "
            "send one per input, in order",
        )
    arrays: dict[str, np.ndarray] = {}
    used = 0
    for i, tensor in enumerate(inputs):
        name, shape = tensor.name, list(tensor.shape)
        if name in arrays:
            raise codec.RequestError(400, f"input '{name:.80}' is in the request twice")
        if raw:
            if tensor.HasField("contents"):
                raise codec.RequestError(
                    400, f"input '{name:.80}' has contents and raw_input_contents: send one"
                )
            data: bytes | memoryview = raw[i]
        else:
            data = _typed(name, tensor, shape, limits, used)
        arrays[name] = oip_tensors.input_from_raw(
            name, tensor.datatype, shape, data, wanted, limits, used
        )
        used += arrays[name].nbytes
    if len(arrays) != len(specs) or len(arrays) > 1:  # one input was judged whole above
        arrays = codec.check(arrays, specs, limits)  # missing inputs, batch sizes that disagree
    return arrays


def _typed(
    name: str,
    tensor: pb.ModelInferRequest.InferInputTensor,
    shape: list[int],
    limits: codec.Limits,
    used: int,
) -> memoryview:
    """A tensor's typed ``contents`` as little-endian bytes for :func:`oip_tensors.input_from_raw`
    (which judges the declaration); its count and size checked before any array is made."""
    dtype = oip_tensors.numpy_dtype(tensor.datatype)
    field = CONTENTS.get(tensor.datatype)
    if field is None:
        raise codec.RequestError(
            400,
            f"input '{name:.80}': {tensor.datatype} has no typed contents: send raw_input_contents",
        )
    if len(shape) > oip_tensors.MAX_DIMS or any(d < 0 for d in shape):
        raise codec.RequestError(
            400, f"input '{name:.80}': shape must be at most {oip_tensors.MAX_DIMS} integers >= 0"
        )
    count = math.prod(shape)
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise codec.RequestError(
            400,
            f"input '{name:.80}': contents.{field} holds {len(values)} values, "
            f"shape {shape[:40]} needs {count}",
        )
    if used + count * dtype.itemsize > limits.max_decoded_bytes:
        raise codec.RequestError(
            413,
            f"input '{name:.80}' needs {count * dtype.itemsize} bytes decoded; this device "
            f"takes at most {limits.max_decoded_bytes} per request (serving.max_decoded_bytes)",
        )
    try:
        with np.errstate(over="raise", invalid="raise"):
            array = np.asarray(values, dtype=dtype.newbyteorder("<"))
    except (OverflowError, ValueError, TypeError, ArithmeticError) as e:
        raise codec.RequestError(
            422,
            f"input '{name:.80}': a value does not fit {tensor.datatype}: {codec.one_line(e)}",
        ) from None
    return np.ascontiguousarray(array).data.cast("B")


def encode_infer(
    request: pb.ModelInferRequest, version: str, outputs: Mapping[str, np.ndarray]
) -> pb.ModelInferResponse:
    """The response: every output as ``raw_output_contents`` (little-endian), as Triton does."""
    response = pb.ModelInferResponse(
        model_name=request.model_name, model_version=version, id=request.id
    )
    for name, array in outputs.items():
        data = array if _LITTLE else array.astype(array.dtype.newbyteorder("<"))
        response.outputs.add(
            name=name, datatype=oip_tensors.datatype(array.dtype), shape=array.shape
        )
        response.raw_output_contents.append(data.tobytes())  # C order, whatever the strides
    return response


def model_metadata(name: str, loaded: LoadedVersion) -> pb.ModelMetadataResponse:
    doc = oip.model_metadata(name, loaded)
    response = pb.ModelMetadataResponse(
        name=doc["name"], versions=doc["versions"], platform=doc["platform"]
    )
    for key in ("inputs", "outputs"):
        for t in doc[key]:
            getattr(response, key).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
    return response

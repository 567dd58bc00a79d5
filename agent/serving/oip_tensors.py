"""The Open Inference Protocol's tensors: its datatype names, and one input tensor judged
from its declaration and made into an array (pure, shared by HTTP and gRPC).

Every tensor is judged from its declared name, datatype and shape against the manifest and the
device's :class:`agent.serving.codec.Limits` *before* its data is read or converted, so a
hostile shape never costs memory; a :class:`agent.serving.codec.RequestError` (HTTP status and
a message that says what to fix) for anything a client got wrong.

``DATATYPES`` / ``datatype(dtype)`` / ``numpy_dtype(name)``
    the protocol's datatype names (``FP32``, ``INT64``, ``BOOL``, ...) and numpy's; ``BYTES``
    and ``BF16`` have no numpy form here and are refused with a 4xx.
``input_from_raw(name, datatype, shape, raw, specs, limits, used)`` /
``input_from_values(name, datatype, shape, values, specs, limits, used)``
    one input tensor from raw little-endian bytes (binary extension, gRPC
    ``raw_input_contents``) or from a list of numbers (JSON ``data``, flat or nested, or gRPC
    ``contents``); ``used`` is what the request's other inputs already decoded (bytes), checked
    with the new one against ``limits.max_decoded_bytes``. Raw data is not copied.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.serving.codec import Limits, RequestError, fits, one_line
from edge_sdk.core.tensors import TensorSpec

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}
# Little-endian on the wire, whatever the machine: the protocol's raw tensor layout.
_WIRE = {name: dtype.newbyteorder("<") for name, dtype in DATATYPES.items()}
MAX_DIMS = 16
_LITTLE = sys.byteorder == "little"


def datatype(dtype: np.dtype[Any] | str) -> str:
    """The protocol's name for a numpy dtype (or dtype name); a 4xx if it has none."""
    name = _NAMES.get(np.dtype(dtype))
    if name is None:
        raise RequestError(422, f"datatype {np.dtype(dtype)} has no Open Inference Protocol form")
    return name


def numpy_dtype(name: object) -> np.dtype[Any]:
    dtype = DATATYPES.get(name) if isinstance(name, str) else None
    if dtype is None:
        known = ", ".join(DATATYPES)
        raise RequestError(400, f"datatype {str(name)[:40]!r} is not supported here ({known})")
    return dtype


def _shape(name: str, shape: object) -> tuple[int, ...]:
    if type(shape) is list and len(shape) <= MAX_DIMS:
        for d in shape:
            if type(d) is not int or d < 0:
                break
        else:
            return tuple(shape)
    raise RequestError(
        400, f"input '{name}': shape must be a list of at most {MAX_DIMS} integers >= 0"
    )


def _admit(
    name: str,
    dtype_name: object,
    shape: object,
    specs: Mapping[str, TensorSpec],
    limits: Limits,
    used: int,
) -> tuple[np.dtype[Any], tuple[int, ...], int]:
    """The tensor's dtype, shape and byte size if its declaration fits the model and limits."""
    spec = specs.get(name)
    if spec is None:
        raise RequestError(
            422, f"unknown input '{name:.80}'; this model takes {', '.join(sorted(specs))}"
        )
    dtype = numpy_dtype(dtype_name)
    dims = _shape(name, shape)
    plan = _plan(spec)
    if dtype is not plan.dtype and dtype != plan.dtype:
        raise RequestError(
            422, f"input '{name}' is {dtype_name}, the model takes {datatype(plan.dtype)}"
        )
    if not plan.accepts(dims, limits):
        fits(name, dtype, dims, spec, limits)  # says what is wrong (or that nothing is)
    nbytes = math.prod(dims) * dtype.itemsize
    if used + nbytes > limits.max_decoded_bytes:
        raise RequestError(
            413,
            f"input '{name}' needs {nbytes} bytes decoded; this device takes at most "
            f"{limits.max_decoded_bytes} per request (serving.max_decoded_bytes)",
        )
    return dtype, dims, nbytes


@dataclass(frozen=True)
class _Plan:
    """What a spec accepts, worked out once: a well-formed tensor is judged in a few compares;
    anything else goes to ``codec.fits`` for its message."""

    dtype: np.dtype[Any]
    ndim: int
    fixed: tuple[tuple[int, int], ...]  # (axis, size) of every fixed dimension

    def accepts(self, dims: tuple[int, ...], limits: Limits) -> bool:
        if len(dims) != self.ndim:
            return False
        for axis, size in self.fixed:
            if dims[axis] != size:
                return False
        return not self.ndim or 0 < dims[0] <= limits.max_samples


@functools.lru_cache(maxsize=256)
def _plan(spec: TensorSpec) -> _Plan:
    fixed = tuple((a, d) for a, d in enumerate(spec.shape) if isinstance(d, int))
    return _Plan(np.dtype(spec.dtype), len(spec.shape), fixed)


def input_from_raw(
    name: str,
    dtype_name: object,
    shape: object,
    raw: bytes | memoryview,
    specs: Mapping[str, TensorSpec],
    limits: Limits,
    used: int = 0,
) -> np.ndarray:
    dtype, dims, nbytes = _admit(name, dtype_name, shape, specs, limits, used)
    if len(raw) != nbytes:
        raise RequestError(
            400, f"input '{name}': {len(raw)} bytes of data for shape {list(dims)} ({nbytes} bytes)"
        )
    if _LITTLE:
        return np.frombuffer(raw, dtype=dtype).reshape(dims)
    wire = _WIRE[str(dtype_name)]
    return np.frombuffer(raw, dtype=wire).reshape(dims).astype(dtype)


def input_from_values(
    name: str,
    dtype_name: object,
    shape: object,
    values: object,
    specs: Mapping[str, TensorSpec],
    limits: Limits,
    used: int = 0,
) -> np.ndarray:
    dtype, dims, _ = _admit(name, dtype_name, shape, specs, limits, used)
    if not isinstance(values, list | tuple):
        raise RequestError(400, f"input '{name}': data must be a list of numbers")
    try:
        with np.errstate(over="raise", invalid="raise"):
            array = np.asarray(values, dtype=dtype)
    except (ValueError, TypeError, ArithmeticError, RecursionError, OverflowError) as e:
        raise RequestError(
            422, f"input '{name}' is not a list of {datatype(dtype)} numbers: {one_line(e)}"
        ) from None
    if array.size != math.prod(dims):
        raise RequestError(400, f"input '{name}': {array.size} values for shape {list(dims)}")
    return array.reshape(dims)

"""The Open Inference Protocol (KServe v2) without a transport: pure, shared by HTTP and gRPC.

Bytes, documents and arrays in; documents, bytes and arrays out; a :class:`RequestError` (HTTP
status and a message that says what to fix) for anything a client got wrong. Nothing here does
I/O or knows about a server. Every tensor is judged from its declared name, datatype and shape
against the manifest and the device's :class:`Limits` *before* its data is read or converted,
so a hostile shape never costs memory.

The contract (stable: ``agent.serving.inference_api`` serves it over HTTP, the gRPC service over
gRPC):

``DATATYPES`` / ``datatype(dtype)`` / ``numpy_dtype(name)``
    the protocol's datatype names (``FP32``, ``INT64``, ``BOOL``, ...) and numpy's; ``BYTES``
    and ``BF16`` have no numpy form here and are refused with a 4xx.
``server_metadata(version)``
    ``{"name", "version", "extensions"}`` for ``GET /v2`` / ``ServerMetadata``.
``version_label(loaded)`` / ``version_matches(loaded, requested)``
    the version as its user wrote it (``"1.2.0"``, ``"7"``); a requested version ("" = any)
    matches the label or the internal integer (``"1002000"``).
``model_metadata(name, loaded)``
    ``{"name", "versions", "platform", "inputs", "outputs"}``; a dynamic dimension is ``-1``.
``input_from_raw(name, datatype, shape, raw, specs, limits, used)`` /
``input_from_values(name, datatype, shape, values, specs, limits, used)``
    one input tensor from raw little-endian bytes (binary extension, gRPC
    ``raw_input_contents``) or from a list of numbers (JSON ``data``, flat or nested, or gRPC
    ``contents``); ``used`` is what the request's other inputs already decoded (bytes), checked
    with the new one against ``limits.max_decoded_bytes``. Raw data is not copied.
``parse_infer(header, binary, specs, limits)``
    a whole HTTP infer request: ``header`` is the JSON document's bytes, ``binary`` what follows
    it under the binary extension (``None`` without it). Returns an :class:`InferRequest`
    whose ``inputs`` are exactly the model's inputs, checked (``agent.serving.codec.check``).
``split_binary(body, header_length)``
    the JSON header and the binary part of a body sent with ``Inference-Header-Content-Length``.
``select_outputs(outputs, wanted)``
    the outputs asked for (``None`` or empty: all), in the order asked; unknown name: 400.
``infer_response(model, version, request_id, outputs, binary)``
    the HTTP response body and, if any output travels as binary, the JSON header's length
    (the ``Inference-Header-Content-Length`` to send); ``binary`` names those outputs.
``error_body(message)``
    ``{"error": message}`` as bytes: the protocol's error document.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.serving.codec import JSON_VALUE_BYTES, Limits, RequestError, check, fits, one_line
from agent.update.selftest import LoadedVersion
from edge_sdk import __version__
from edge_sdk.core.jsondepth import too_deep
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
EXTENSIONS = ("binary_tensor_data",)
SERVER_NAME = "edge-agent"
_PLATFORMS = {"onnx": "onnxruntime_onnx", "tflite": "tensorflow_lite"}
MAX_ID_CHARS = 256
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


def server_metadata(version: str = __version__) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": version, "extensions": list(EXTENSIONS)}


def version_label(loaded: LoadedVersion) -> str:
    m = loaded.bundle.manifest
    return m.label or str(m.version)


def version_matches(loaded: LoadedVersion, requested: str) -> bool:
    return requested in ("", version_label(loaded), str(loaded.version))


def tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    shape = [d if isinstance(d, int) else -1 for d in spec.shape]
    return {"name": spec.name, "datatype": datatype(spec.dtype), "shape": shape}


def model_metadata(name: str, loaded: LoadedVersion) -> dict[str, Any]:
    m = loaded.bundle.manifest
    return {
        "name": name,
        "versions": [version_label(loaded)],
        "platform": _PLATFORMS.get(m.runtime, m.runtime),
        "inputs": [tensor_metadata(s) for s in m.inputs],
        "outputs": [tensor_metadata(s) for s in m.outputs],
    }


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


@dataclass(slots=True)
class InferRequest:
    """A checked infer request: ``inputs`` are the model's, ``outputs`` the names asked for
    (empty: all) and ``binary`` those of them to send as binary (``binary_all``: every one)."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: tuple[str, ...] = ()
    binary: frozenset[str] = field(default_factory=frozenset)
    binary_all: bool = False

    def binary_outputs(self, names: Sequence[str]) -> set[str]:
        return set(names) if self.binary_all else set(self.binary & set(names))


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


def split_binary(body: bytes, header_length: str) -> tuple[bytes, memoryview]:
    text = header_length.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise RequestError(
            400, f"Inference-Header-Content-Length {text[:40]!r} is not a number of bytes"
        )
    length = int(text)
    if length > len(body):
        raise RequestError(
            400,
            f"Inference-Header-Content-Length is {length}, the body holds only {len(body)} bytes",
        )
    view = memoryview(body)
    return bytes(view[:length]), view[length:]


def _params(where: str, item: Mapping[str, Any]) -> Mapping[str, Any]:
    params = item.get("parameters", {})
    if not isinstance(params, dict):
        raise RequestError(400, f"{where}: parameters must be an object")
    for unsupported in ("shared_memory_region", "classification"):
        if unsupported in params:
            raise RequestError(400, f"{where}: parameter '{unsupported}' is not supported here")
    return params


def _flag(where: str, params: Mapping[str, Any], key: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise RequestError(400, f"{where}: parameter '{key}' must be true or false")
    return value


def parse_infer(
    header: bytes,
    binary: memoryview | None,
    specs: Sequence[TensorSpec],
    limits: Limits,
) -> InferRequest:
    values = header.count(b"[") + header.count(b",") + header.count(b"{") + 1
    if values * JSON_VALUE_BYTES > limits.max_decoded_bytes:
        raise RequestError(
            413,
            f"JSON of {len(header)} bytes may hold {values} values; this device parses at most "
            f"{limits.max_decoded_bytes // JSON_VALUE_BYTES} per request "
            "(serving.max_decoded_bytes / 32): send tensors with the binary data extension",
        )
    try:
        if too_deep(header):
            raise RecursionError
        doc = json.loads(header)
    except RecursionError:
        raise RequestError(400, "request JSON is nested too deep") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(400, f"request is not valid JSON: {one_line(e)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise RequestError(
            400, 'request must be {"inputs": [{"name", "shape", "datatype", "data"}, ...]}'
        )
    request_id = doc.get("id")
    if request_id is not None and not (
        isinstance(request_id, str) and len(request_id) <= MAX_ID_CHARS
    ):
        raise RequestError(400, f"id must be a string of at most {MAX_ID_CHARS} characters")
    binary_all = _flag("request", _params("request", doc), "binary_data_output")
    wanted = {s.name: s for s in specs}
    arrays: dict[str, np.ndarray] = {}
    used = offset = 0
    rest = binary if binary is not None else memoryview(b"")
    for item in doc["inputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RequestError(400, "every input must be an object with a string name")
        name = item["name"]
        where = f"input '{name:.80}'"
        if name in arrays:
            raise RequestError(400, f"{where} is in the request twice")
        params = _params(where, item)
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise RequestError(400, f"{where}: binary_data_size must be an integer >= 0")
            # Past the body's end the slice is short: judged after the declaration (a 413 for a
            # shape over the caps comes first), then a 400 that says how many bytes came.
            raw = rest[offset : offset + size]
            offset += size
            arrays[name] = input_from_raw(
                name, item.get("datatype"), item.get("shape"), raw, wanted, limits, used
            )
        elif "data" in item:
            arrays[name] = input_from_values(
                name, item.get("datatype"), item.get("shape"), item["data"], wanted, limits, used
            )
        else:
            raise RequestError(400, f"{where} has neither data nor parameters.binary_data_size")
        used += arrays[name].nbytes
    if offset != len(rest):
        raise RequestError(
            400, f"{len(rest) - offset} bytes after the JSON header belong to no input"
        )
    if len(arrays) != len(specs) or len(arrays) > 1:  # every tensor was judged on its own
        arrays = check(arrays, specs, limits)  # missing inputs, batch sizes that disagree
    outputs, binary_names = _requested_outputs(doc.get("outputs"))
    return InferRequest(request_id, arrays, outputs, frozenset(binary_names), binary_all)


def _requested_outputs(items: object) -> tuple[tuple[str, ...], set[str]]:
    if items is None:
        return (), set()
    if not isinstance(items, list):
        raise RequestError(400, 'outputs must be a list of {"name": ...}')
    names: list[str] = []
    binary: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RequestError(400, "every requested output must be an object with a string name")
        name = item["name"]
        where = f"output '{name:.80}'"
        if name in names:
            raise RequestError(400, f"{where} is requested twice")
        if _flag(where, _params(where, item), "binary_data"):
            binary.add(name)
        names.append(name)
    return tuple(names), binary


def select_outputs(
    outputs: Mapping[str, np.ndarray], wanted: Sequence[str] | None
) -> dict[str, np.ndarray]:
    if not wanted:
        return dict(outputs)
    unknown = [n for n in wanted if n not in outputs]
    if unknown:
        raise RequestError(
            400,
            f"unknown output '{unknown[0]:.80}'; this model gives {', '.join(sorted(outputs))}",
        )
    return {n: outputs[n] for n in wanted}


def check_output_names(wanted: Sequence[str], specs: Sequence[TensorSpec]) -> None:
    """A 400 for an output the model does not have, before the model runs."""
    if wanted:
        names = {s.name for s in specs}
        for name in wanted:
            if name not in names:
                raise RequestError(
                    400,
                    f"unknown output '{name:.80}'; this model gives {', '.join(sorted(names))}",
                )


@functools.lru_cache(maxsize=1024)
def _quoted(text: str) -> str:
    return json.dumps(text)


def infer_response(
    model: str,
    version: str,
    request_id: str | None,
    outputs: Mapping[str, np.ndarray],
    binary: set[str] | frozenset[str] = frozenset(),
) -> tuple[bytes, int | None]:
    # Written by hand, not json.dumps of a document: this is on every request's path.
    parts = ['{"model_name":', _quoted(model), ',"model_version":', _quoted(version)]
    if request_id is not None:
        parts += [',"id":', json.dumps(request_id)]
    parts.append(',"outputs":[')
    blobs: list[Any] = []
    for i, (name, array) in enumerate(outputs.items()):
        shape = ",".join([str(d) for d in array.shape])
        parts += [
            "," if i else "",
            '{"name":',
            _quoted(name),
            ',"datatype":"',
            datatype(array.dtype),
            '","shape":[',
            shape,
            "]",
        ]
        if name in binary:
            data = array
            if not (_LITTLE and array.dtype.isnative and array.flags.c_contiguous):
                data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
            parts += [',"parameters":{"binary_data_size":', str(data.nbytes), "}}"]
            blobs.append(data)
        else:
            parts += [',"data":', json.dumps(array.ravel().tolist()), "}"]
    parts.append("]}")
    head = "".join(parts).encode()
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)

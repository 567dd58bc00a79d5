"""The Open Inference Protocol (KServe v2) without a transport: pure, shared by HTTP and gRPC.

Bytes, documents and arrays in; documents, bytes and arrays out; a :class:`RequestError` (HTTP
status and a message that says what to fix) for anything a client got wrong. Nothing here does
I/O or knows about a server. Every tensor is judged from its declared name, datatype and shape
against the manifest and the device's :class:`Limits` *before* its data is read or converted,
so a hostile shape never costs memory (the tensors themselves: ``agent.serving.oip_tensors``,
which holds the datatypes and ``input_from_raw`` / ``input_from_values``).

The contract (stable: ``agent.serving.inference_api`` serves it over HTTP, the gRPC service over
gRPC):

``server_metadata(version)``
    ``{"name", "version", "extensions"}`` for ``GET /v2`` / ``ServerMetadata``.
``version_label(loaded)`` / ``version_matches(loaded, requested)``
    the version as its user wrote it (``"1.2.0"``, ``"7"``); a requested version ("" = any)
    matches the label or the internal integer (``"1002000"``).
``model_metadata(name, loaded)``
    ``{"name", "versions", "platform", "inputs", "outputs"}``; a dynamic dimension is ``-1``.
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
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.serving.codec import JSON_VALUE_BYTES, Limits, RequestError, check, one_line
from agent.serving.oip_tensors import datatype, input_from_raw, input_from_values
from agent.update.selftest import LoadedVersion
from edge_sdk import __version__
from edge_sdk.core.jsondepth import too_deep
from edge_sdk.core.tensors import TensorSpec

EXTENSIONS = ("binary_tensor_data",)
SERVER_NAME = "edge-agent"
_PLATFORMS = {"onnx": "onnxruntime_onnx", "tflite": "tensorflow_lite"}
MAX_ID_CHARS = 256
_LITTLE = sys.byteorder == "little"


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

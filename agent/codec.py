"""Predict requests and responses: JSON for convenience, ``.npz``/``.npy`` bodies for speed.

Pure: bytes in, arrays out (or a :class:`RequestError` with the HTTP status and a message that
says what to fix). Every input is checked against the manifest's names, shapes and dtypes here,
so nothing malformed ever reaches the runtime.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_sdk import npy
from edge_sdk.tensors import TensorSpec, format_shape

JSON = "application/json"
NPZ = "application/x-npz"
NPY = "application/x-npy"


@dataclass(frozen=True)
class RequestError(Exception):
    status: int
    message: str

    def __str__(self) -> str:
        return self.message


def media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def decode(body: bytes, content_type: str, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    kind = media_type(content_type) or JSON
    if kind == JSON:
        arrays = _from_json(body, specs)
    elif kind in (NPZ, "application/octet-stream"):
        arrays = _from_npz(body)
    elif kind == NPY:
        if len(specs) != 1:
            names = ", ".join(s.name for s in specs)
            raise RequestError(415, f"this model takes {len(specs)} inputs ({names}): send .npz")
        arrays = {specs[0].name: _from_npy(body)}
    else:
        raise RequestError(
            415, f"content type {kind!r} is not supported; send {JSON}, {NPZ} or {NPY}"
        )
    return check(arrays, specs)


def _from_json(body: bytes, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(400, f"body is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), dict):
        raise RequestError(400, 'JSON body must be {"inputs": {"<input name>": [...]}}')
    dtypes = {s.name: s.dtype for s in specs}
    arrays = {}
    for name, value in doc["inputs"].items():
        try:
            arrays[name] = np.asarray(value, dtype=dtypes.get(name, "float32"))
        except (ValueError, TypeError) as e:
            raise RequestError(
                422, f"input '{name}' is not a rectangular array of numbers: {e}"
            ) from e
    return arrays


def _from_npz(body: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except Exception as e:  # numpy and zipfile raise many kinds for bad bytes
        raise RequestError(400, f"body is not a readable .npz archive: {e}") from e


def _from_npy(body: bytes) -> np.ndarray:
    try:
        return npy.loads(body)
    except Exception as e:  # as above
        raise RequestError(400, f"body is not a readable .npy array: {e}") from e


def check(arrays: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """The arrays if they are exactly the model's inputs, with the manifest's dtypes and
    shapes (dynamic dimensions free, samples on the first axis); 422 otherwise."""
    wanted = {s.name: s for s in specs}
    unknown = sorted(set(arrays) - set(wanted))
    if unknown:
        raise RequestError(
            422, f"unknown input '{unknown[0]}'; this model takes {', '.join(sorted(wanted))}"
        )
    missing = sorted(set(wanted) - set(arrays))
    if missing:
        raise RequestError(422, f"missing input '{missing[0]}'")
    batch: int | None = None
    for name, spec in wanted.items():
        array = arrays[name]
        if array.dtype != np.dtype(spec.dtype):
            raise RequestError(
                422, f"input '{name}' is {array.dtype}, the model takes {spec.dtype}"
            )
        if array.ndim != len(spec.shape) or any(
            isinstance(want, int) and want != got
            for want, got in zip(spec.shape[1:], array.shape[1:], strict=False)
        ):
            raise RequestError(
                422,
                f"input '{name}' has shape {list(array.shape)}, the model takes "
                f"{format_shape(spec.shape)}",
            )
        if isinstance(spec.shape[0], int) and array.shape[0] != spec.shape[0]:
            raise RequestError(422, f"input '{name}' must hold {spec.shape[0]} samples")
        if array.shape[0] == 0:
            raise RequestError(422, f"input '{name}' holds no samples")
        if batch is not None and array.shape[0] != batch:
            raise RequestError(422, "every input must hold the same number of samples")
        batch = array.shape[0]
    return dict(arrays)


def encode(outputs: Mapping[str, np.ndarray], accept: str) -> tuple[bytes, str]:
    """The response body and its content type: what the client accepts, JSON by default."""
    kinds = {media_type(part) for part in accept.split(",")} if accept else set()
    if NPY in kinds and len(outputs) == 1:  # the cheapest binary form, when it can say it all
        return npy.dumps(next(iter(outputs.values()))), NPY
    if NPZ in kinds:
        buffer = io.BytesIO()
        np.savez(buffer, **outputs)  # type: ignore[arg-type]
        return buffer.getvalue(), NPZ
    doc: dict[str, Any] = {"outputs": {k: v.tolist() for k, v in outputs.items()}}
    return json.dumps(doc).encode(), JSON

"""Predict requests and responses: JSON for convenience, ``.npz``/``.npy`` bodies for speed.

Pure: bytes in, arrays out (or a :class:`RequestError` with the HTTP status and a message that
says what to fix). Every input is checked against the manifest's names, shapes and dtypes here,
so nothing malformed ever reaches the runtime; and against the device's :class:`Limits` before
it costs memory: a binary array's name, dtype, shape and size are judged from its ``.npy``
header before its data is read or decompressed, and a JSON body's value count from its bytes
before it is parsed.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_sdk.core import npy
from edge_sdk.core.jsondepth import too_deep
from edge_sdk.core.tensors import TensorSpec, format_shape
from edge_sdk.core.text import one_line as one_line  # the HTTP and gRPC fronts use codec's

# RequestError lives in the project's error tree (edge_sdk.errors, under PredictError); the
# HTTP and gRPC fronts name it codec.RequestError.
from edge_sdk.errors import RequestError as RequestError

JSON = "application/json"
NPZ = "application/x-npz"
NPY = "application/x-npy"
OCTET = "application/octet-stream"
# A JSON number costs the agent about this many bytes while it parses (a Python float and a
# list slot), so a JSON body's values count this much each against ``max_decoded_bytes``.
JSON_VALUE_BYTES = 32
# What zipfile raises for bytes that are not a well-formed archive (its own BadZipFile is only
# one of them); numpy never sees the archive.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    struct.error,
    UnicodeDecodeError,
    OverflowError,
    NotImplementedError,
    RuntimeError,
    KeyError,
    IndexError,
)


@dataclass(frozen=True)
class Limits:
    """What one predict request may cost the device (``[serving]`` in agent.toml)."""

    max_samples: int = 256
    max_decoded_bytes: int = 8 << 20


DEFAULT_LIMITS = Limits()


def media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def decode(
    body: bytes,
    content_type: str,
    specs: Sequence[TensorSpec],
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, np.ndarray]:
    kind = media_type(content_type) or JSON
    if kind == OCTET:  # say what it is by its first bytes
        kind = NPY if body[:6] == npy.MAGIC else NPZ
    if kind == JSON:
        arrays = _from_json(body, specs, limits)
    elif kind == NPZ:
        arrays = _from_npz(body, specs, limits)
    elif kind == NPY:
        if len(specs) != 1:
            names = ", ".join(s.name for s in specs)
            raise RequestError(415, f"this model takes {len(specs)} inputs ({names}): send .npz")
        arrays = _from_npy(body, specs[0], limits)
    else:
        raise RequestError(
            415, f"content type {kind!r} is not supported; send {JSON}, {NPZ} or {NPY}"
        )
    return check(arrays, specs, limits)


def _from_json(body: bytes, specs: Sequence[TensorSpec], limits: Limits) -> dict[str, np.ndarray]:
    # Every number in a JSON array follows a '[' or a ',': their count bounds the values (and
    # the Python objects parsing makes) before any is made.
    values = body.count(b"[") + body.count(b",") + body.count(b"{") + 1
    if values * JSON_VALUE_BYTES > limits.max_decoded_bytes:
        raise RequestError(
            413,
            f"JSON body of {len(body)} bytes may hold {values} values; this device parses at "
            f"most {limits.max_decoded_bytes // JSON_VALUE_BYTES} per request "
            "(serving.max_decoded_bytes / 32): send .npy or .npz",
        )
    try:
        if too_deep(body):
            raise RecursionError
        doc = json.loads(body)
    except RecursionError:
        raise RequestError(400, "body is JSON nested too deep; send at most 32 levels") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(400, f"body is not valid JSON: {one_line(e)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), dict):
        raise RequestError(400, 'JSON body must be {"inputs": {"<input name>": [...]}}')
    wanted = {s.name: s for s in specs}
    arrays = {}
    for name, value in doc["inputs"].items():
        spec = _spec(name, wanted)
        if isinstance(value, list) and len(value) > limits.max_samples:
            raise _too_many(name, len(value), limits)
        try:
            with np.errstate(over="raise"):  # 1e300 as float32 is a 422, not a silent inf
                arrays[name] = np.asarray(value, dtype=spec.dtype)
        except (ValueError, TypeError, ArithmeticError, RecursionError) as e:
            raise RequestError(
                422,
                f"input '{name}' is not a rectangular array of {spec.dtype} numbers: {one_line(e)}",
            ) from None
    return arrays


def _from_npy(body: bytes, spec: TensorSpec, limits: Limits) -> dict[str, np.ndarray]:
    if body[:4] == b"PK\x03\x04":
        raise RequestError(400, f"body is an .npz archive, not .npy: send it as {NPZ}")
    view = memoryview(body)
    try:
        header = npy.read_header(io.BytesIO(body).read)
    except ValueError as e:
        raise RequestError(400, f"body is not a readable .npy array: {one_line(e)}") from None
    _admit(spec.name, header, {spec.name: spec}, limits, 0)
    try:
        return {spec.name: npy.from_data(header, view[header.length :])}
    except ValueError as e:
        raise RequestError(400, f"body is not a readable .npy array: {one_line(e)}") from None


def _from_npz(body: bytes, specs: Sequence[TensorSpec], limits: Limits) -> dict[str, np.ndarray]:
    if body[:6] == npy.MAGIC:
        raise RequestError(400, f"body is a .npy array, not an .npz archive: send it as {NPY}")
    wanted = {s.name: s for s in specs}
    arrays: dict[str, np.ndarray] = {}
    used = 0
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            members = archive.infolist()
            if len(members) > len(wanted):
                raise RequestError(
                    422,
                    f"archive holds {len(members)} arrays; this model takes {len(wanted)} "
                    f"({', '.join(sorted(wanted))})",
                )
            for info in members:
                name = info.filename.removesuffix(".npy")
                if name == info.filename:
                    raise RequestError(400, f"archive member {name!r:.80} is not a .npy array")
                spec = _spec(name, wanted)
                if name in arrays:
                    raise RequestError(422, f"input '{name}' is in the archive twice")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise RequestError(
                        415,
                        f"input '{name}' is compressed with zip method {info.compress_type}; "
                        "send np.savez (stored) or np.savez_compressed (deflate)",
                    )
                with archive.open(info) as member:
                    header = npy.read_header(member.read)
                    used += _admit(name, header, {name: spec}, limits, used)
                    if info.file_size != header.length + header.nbytes:
                        raise RequestError(
                            400, f"input '{name}': the archive's size disagrees with its header"
                        )
                    arrays[name] = npy.from_data(header, member.read(header.nbytes))
    except _ZIP_ERRORS as e:
        raise RequestError(400, f"body is not a readable .npz archive: {one_line(e)}") from None
    return arrays


def _spec(name: str, wanted: Mapping[str, TensorSpec]) -> TensorSpec:
    spec = wanted.get(name)
    if spec is None:
        raise RequestError(
            422, f"unknown input '{name:.80}'; this model takes {', '.join(sorted(wanted))}"
        )
    return spec


def _too_many(name: str, samples: int, limits: Limits) -> RequestError:
    return RequestError(
        413,
        f"input '{name}' holds {samples} samples; this device takes at most "
        f"{limits.max_samples} per request (serving.max_samples): split the request",
    )


def _admit(
    name: str, header: npy.Header, wanted: Mapping[str, TensorSpec], limits: Limits, used: int
) -> int:
    """An array's bytes, if its header fits the model and the limits (``used`` bytes already
    taken by the request's other arrays); before any of its data is read."""
    spec = _spec(name, wanted)
    fits(name, header.dtype, header.shape, spec, limits)
    if used + header.nbytes > limits.max_decoded_bytes:
        raise RequestError(
            413,
            f"input '{name}' needs {header.nbytes} bytes decoded; this device takes at most "
            f"{limits.max_decoded_bytes} per request (serving.max_decoded_bytes)",
        )
    return header.nbytes


def fits(
    name: str, dtype: np.dtype, shape: tuple[int, ...], spec: TensorSpec, limits: Limits
) -> None:
    if dtype != np.dtype(spec.dtype):
        raise RequestError(422, f"input '{name}' is {dtype}, the model takes {spec.dtype}")
    if len(shape) != len(spec.shape) or any(
        isinstance(want, int) and want != got
        for want, got in zip(spec.shape[1:], shape[1:], strict=False)
    ):
        raise RequestError(
            422,
            f"input '{name}' has shape {list(shape)[:40]}, the model takes "
            f"{format_shape(spec.shape)}",
        )
    if not shape:  # a scalar input: one value, no samples axis
        return
    if isinstance(spec.shape[0], int) and shape[0] != spec.shape[0]:
        raise RequestError(422, f"input '{name}' must hold {spec.shape[0]} samples")
    if shape[0] == 0:
        raise RequestError(422, f"input '{name}' holds no samples")
    if shape[0] > limits.max_samples:
        raise _too_many(name, shape[0], limits)


def samples(arrays: Mapping[str, np.ndarray]) -> int:
    """How many samples a checked request holds (1 for a model of scalar inputs)."""
    first = next(iter(arrays.values()), None)
    return 1 if first is None or first.ndim == 0 else int(first.shape[0])


def check(
    arrays: Mapping[str, np.ndarray], specs: Sequence[TensorSpec], limits: Limits = DEFAULT_LIMITS
) -> dict[str, np.ndarray]:
    """The arrays if they are exactly the model's inputs, with the manifest's dtypes and
    shapes (dynamic dimensions free, samples on the first axis) and within ``limits``; a 4xx
    otherwise."""
    wanted = {s.name: s for s in specs}
    unknown = sorted(set(arrays) - set(wanted))
    if unknown:
        _spec(unknown[0], wanted)
    missing = sorted(set(wanted) - set(arrays))
    if missing:
        raise RequestError(422, f"missing input '{missing[0]}'")
    batch: int | None = None
    total = 0
    for name, spec in wanted.items():
        array = arrays[name]
        fits(name, array.dtype, array.shape, spec, limits)
        total += array.nbytes
        if total > limits.max_decoded_bytes:
            raise RequestError(
                413,
                f"the inputs hold {total}+ bytes; this device takes at most "
                f"{limits.max_decoded_bytes} per request (serving.max_decoded_bytes)",
            )
        count = array.shape[0] if array.ndim else 1
        if batch is not None and count != batch:
            raise RequestError(422, "every input must hold the same number of samples")
        batch = count
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

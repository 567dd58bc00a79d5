"""``.npy`` bytes to arrays and back, fast for the small tensors of a predict request, and safe
for bytes from anyone.

``np.load`` reads the header with ``ast.literal_eval`` (tens of microseconds, more than the
data itself for a few hundred floats). The header numpy writes has one fixed form, so it is
parsed here with a regular expression; any other version 1 or 2 header goes through numpy's own
header reader (``max_header_size`` bounded). Either way the array is never built by numpy's
loader: the header is read first and is all a caller needs to refuse an array by its dtype,
shape or size (:func:`read_header`) before a byte of data is read or decompressed, and the
data must be exactly what the header says. Object arrays (pickles) are refused; every problem
is a ``ValueError``.
"""

from __future__ import annotations

import ast
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MAGIC = b"\x93NUMPY"
MAX_HEADER_BYTES = 10_000  # numpy's own default cap; a 32-dimension header needs < 1,000
_HEADER = re.compile(
    rb"\{'descr': '([<>|][a-z][0-9]{1,2})', 'fortran_order': False, "
    rb"'shape': \(((?:[0-9]+, )*(?:[0-9]+,?)?)\), \}"
)
# What numpy's header reader raises for bytes it cannot read, besides ValueError.
_NUMPY_HEADER_ERRORS = (
    ValueError,
    TypeError,
    SyntaxError,
    OverflowError,
    RecursionError,
    MemoryError,
    UnicodeDecodeError,
    KeyError,
)


@dataclass(frozen=True)
class Header:
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    length: int  # bytes before the data: magic, version, length field and the header text

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of data the header promises (exact Python arithmetic: no overflow)."""
        return self.count * self.dtype.itemsize


def dumps(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def read_header(read: Callable[[int], bytes]) -> Header:
    """The header at the start of a stream (``read(n)`` returns up to ``n`` bytes); reads only
    the header, at most ``MAX_HEADER_BYTES`` of it."""
    start = _exactly(read, 8, "the .npy magic")
    if start[:6] != MAGIC:
        raise ValueError("not a .npy array (no \\x93NUMPY magic at the start)")
    version = (start[6], start[7])
    if version == (1, 0):
        field = 2
    elif version in ((2, 0), (3, 0)):
        field = 4
    else:
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
    size = int.from_bytes(_exactly(read, field, "the header length"), "little")
    if size > MAX_HEADER_BYTES:
        raise ValueError(f".npy header of {size} bytes is over the {MAX_HEADER_BYTES}-byte cap")
    text = _exactly(read, size, "the header")
    length = 8 + field + size
    match = _HEADER.fullmatch(text.rstrip(b" \n"))
    if match is not None and version == (1, 0):
        try:
            dtype = np.dtype(match.group(1).decode())
        except TypeError:  # '<f3' has the form of a dtype but is none
            raise ValueError(f".npy descr {match.group(1)!r} is not a dtype") from None
        shape = tuple(int(d) for d in match.group(2).split(b",") if d.strip())
        return _checked(dtype, shape, False, length)
    return _parse_slow(text, version, length)


def _parse_slow(text: bytes, version: tuple[int, int], length: int) -> Header:
    """Any other header numpy can write: ``ast.literal_eval`` of a bounded text, and numpy's own
    descriptor reader for the dtype."""
    if b"\\" in text:  # escapes only appear in exotic field names; Python would warn on some
        raise ValueError(".npy header holds a backslash escape; it is not supported")
    try:
        doc = ast.literal_eval(text.decode("utf-8" if version == (3, 0) else "latin-1"))
    except _NUMPY_HEADER_ERRORS as e:
        raise ValueError(f".npy header is not a Python literal: {type(e).__name__}") from None
    if not isinstance(doc, dict) or set(doc) != {"descr", "fortran_order", "shape"}:
        raise ValueError(".npy header must hold exactly descr, fortran_order and shape")
    shape, fortran = doc["shape"], doc["fortran_order"]
    if not isinstance(shape, tuple) or not all(type(d) is int for d in shape):
        raise ValueError(f".npy header shape is not a tuple of integers: {shape!r:.80}")
    if not isinstance(fortran, bool):
        raise ValueError(".npy header fortran_order is not a boolean")
    try:
        dtype = np.lib.format.descr_to_dtype(doc["descr"])
    except _NUMPY_HEADER_ERRORS as e:
        raise ValueError(f".npy header descr is not a dtype: {type(e).__name__}") from None
    return _checked(dtype, shape, fortran, length)


def _checked(dtype: np.dtype, shape: tuple[int, ...], fortran: bool, length: int) -> Header:
    if dtype.hasobject:
        raise ValueError(".npy array holds Python objects (a pickle); send numbers")
    if dtype.subdtype is not None:
        raise ValueError(f".npy dtype {dtype} is a sub-array; numpy writes its shape instead")
    if dtype.itemsize == 0:
        raise ValueError(f".npy dtype {dtype} has no size")
    if len(shape) > 32 or any(d < 0 for d in shape):
        raise ValueError(f".npy shape {list(shape)[:40]} is not a valid array shape")
    return Header(dtype, shape, fortran, length)


def _exactly(read: Callable[[int], bytes], n: int, what: str) -> bytes:
    data = read(n)
    if len(data) != n:
        raise ValueError(f"the .npy bytes end inside {what}")
    return data


def from_data(header: Header, data: bytes | memoryview) -> np.ndarray:
    """The array ``header`` describes over ``data``, which must be exactly its bytes."""
    if len(data) != header.nbytes:
        raise ValueError(
            f"the array needs {header.nbytes} bytes of data, the body holds {len(data)}"
        )
    try:
        flat = np.frombuffer(data, dtype=header.dtype, count=header.count)
        if header.fortran_order:
            return flat.reshape(header.shape[::-1]).transpose()
        return flat.reshape(header.shape)
    except (ValueError, TypeError, OverflowError) as e:  # e.g. a 0-sized dimension of 2**70
        raise ValueError(f"the .npy header does not describe an array: {e}") from None


def loads(data: bytes, *, max_bytes: int | None = None) -> np.ndarray:
    """The array in ``data``; raises ``ValueError`` for anything that is not a whole .npy, or
    whose header promises more than ``max_bytes`` of data."""
    view = memoryview(data)
    cursor = 0

    def read(n: int) -> bytes:
        nonlocal cursor
        chunk = bytes(view[cursor : cursor + n])
        cursor += len(chunk)
        return chunk

    header = read_header(read)
    if max_bytes is not None and header.nbytes > max_bytes:
        raise ValueError(f"the array holds {header.nbytes} bytes, over the {max_bytes}-byte cap")
    return from_data(header, view[header.length :])

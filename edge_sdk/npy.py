"""``.npy`` bytes to arrays and back, fast for the small tensors of a predict request.

``np.load`` reads the header with ``ast.literal_eval`` (tens of microseconds, more than the
data itself for a few hundred floats). The header numpy writes has one fixed form, so it is
parsed here with a regular expression; anything else (another version, Fortran order, object
dtypes) goes through numpy's own reader, which also does every safety check.
"""

from __future__ import annotations

import io
import re

import numpy as np

MAGIC = b"\x93NUMPY"
_HEADER = re.compile(
    rb"\{'descr': '([<>|][a-z][0-9]{1,2})', 'fortran_order': False, 'shape': \(([0-9, ]*)\), \}"
)


def dumps(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def loads(data: bytes) -> np.ndarray:
    """The array in ``data``; raises ``ValueError`` for anything that is not a whole .npy."""
    if data[:6] == MAGIC and data[6:8] == b"\x01\x00" and len(data) >= 10:
        header_length = int.from_bytes(data[8:10], "little")
        match = _HEADER.match(data, 10, 10 + header_length)
        if match is not None:
            dtype = np.dtype(match.group(1).decode())
            shape = tuple(int(d) for d in match.group(2).split(b",") if d.strip())
            payload = memoryview(data)[10 + header_length :]
            count = int(np.prod(shape)) if shape else 1
            if len(payload) != count * dtype.itemsize:
                raise ValueError(
                    f"the array needs {count * dtype.itemsize} bytes of data, "
                    f"the body holds {len(payload)}"
                )
            return np.frombuffer(payload, dtype=dtype).reshape(shape)
    return np.load(io.BytesIO(data), allow_pickle=False)  # type: ignore[no-any-return]

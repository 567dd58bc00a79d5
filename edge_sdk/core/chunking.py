"""Content-defined chunking: how bundle files are cut into content-addressed chunks.

The host publisher and the device agent both cut files with :func:`split`, and chunks travel and
are stored under the sha256 of their bytes. Because cut points depend on the bytes around them
rather than on offsets, inserting or deleting bytes moves only the chunks next to the edit; the
rest keep their names and a device re-uses what it already holds.

This is part of the wire protocol: any change to the gear table, the hash, the thresholds or the
cut rule changes chunk names and defeats re-use across versions (tests pin a known answer).

Algorithm (FastCDC-style, with a gear hash)::

    h[i] = sum(G[data[i - k]] << k for k in 0..63)  (mod 2**64)

which is the classic gear recurrence ``h = (h << 1) + G[byte]`` with the hash never reset: a
byte's contribution is shifted out after 64 steps, so ``h[i]`` depends only on the 64 bytes ending
at ``i``. That makes it a pure function of a window, computable for every position at once with
numpy by doubling the window six times (1, 2, 4, ... 64 bytes), instead of a per-byte Python loop.
A chunk may end after byte ``i`` when ``h[i]`` is below a threshold (its top bits are zero; the
top bits depend on the most bytes). Normalized chunking, as in FastCDC: a strict threshold
(probability 1/(4*avg)) until the chunk reaches ``avg_size``, a loose one (4/avg) after, which
narrows the size distribution around ``avg_size``; ``max_size`` is a hard cut.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# 64 KiB average: a 4 MB model is ~60 chunks, each a comfortable MQTT message, and an edit costs
# re-sending ~one or two chunks (~100 KiB). 16 KiB minimum keeps per-chunk overhead (topic,
# sha256 name, request round trip) under 1%; 256 KiB maximum bounds a chunk on data with no cut
# points (runs of zeros) and stays well inside the agent's default max_chunk_bytes (1 MiB).
MIN_CHUNK = 16 * 1024
AVG_CHUNK = 64 * 1024
MAX_CHUNK = 256 * 1024

# The hash sees the last WINDOW bytes; a chunk shorter than that would be cut by bytes from the
# chunk before it, so min_size may not go below it.
WINDOW = 64
# Positions hashed per numpy pass: bounds memory (~10 uint64 arrays of this length) on devices
# chunking large artifacts, while keeping per-pass overhead negligible.
_BLOCK = 1 << 20
_SEED = b"edge-sdk chunking gear table v1"


def _gear_table() -> npt.NDArray[np.uint64]:
    # From sha256 of a fixed seed, never numpy's RNG: the table is protocol and must be the same
    # on every machine and numpy version.
    values = [
        int.from_bytes(hashlib.sha256(_SEED + bytes([i])).digest()[:8], "big") for i in range(256)
    ]
    return np.array(values, dtype=np.uint64)


_GEAR = _gear_table()


@dataclass(frozen=True)
class Chunk:
    sha256: str  # hex digest of the chunk bytes
    offset: int
    length: int


def _check_sizes(min_size: int, avg_size: int, max_size: int) -> None:
    for name, value in (("min_size", min_size), ("avg_size", avg_size), ("max_size", max_size)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if not WINDOW <= min_size <= avg_size <= max_size:
        raise ValueError(
            f"chunk sizes must satisfy {WINDOW} <= min_size <= avg_size <= max_size, got "
            f"min_size={min_size}, avg_size={avg_size}, max_size={max_size}"
        )


def _window_hashes(window: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """Gear hash of the WINDOW bytes ending at every position of ``window``.

    Bytes before the start of ``window`` count as absent, the same as a hash started from zero
    there; callers pass WINDOW - 1 bytes of left context so that only full windows are used.
    """
    h = _GEAR[window]
    span = 1
    # h covers `span` bytes; h[i] + (h[i - span] << span) covers 2 * span. numpy's unsigned
    # arithmetic wraps modulo 2**64, which is the hash's definition.
    while span < WINDOW:
        # The shift makes a new array before the in-place add, so the overlapping slices read
        # the old values.
        h[span:] += h[:-span] << np.uint64(span)
        span *= 2
    return h


def _candidates(buf: npt.NDArray[np.uint8], strict: int, loose: int) -> tuple[list[int], list[int]]:
    """Cut offsets (end of chunk, exclusive) allowed by each threshold, ascending."""
    strict_cuts: list[int] = []
    loose_cuts: list[int] = []
    t_strict, t_loose = np.uint64(strict), np.uint64(loose)
    for start in range(0, len(buf), _BLOCK):
        lead = min(start, WINDOW - 1)
        h = _window_hashes(buf[start - lead : start + _BLOCK])[lead:]
        hits = np.flatnonzero(h < t_loose)
        # +1: a hit at byte i lets a chunk end after it, at offset i + 1.
        loose_cuts.extend((hits + (start + 1)).tolist())
        strong = hits[h[hits] < t_strict]
        strict_cuts.extend((strong + (start + 1)).tolist())
    return strict_cuts, loose_cuts


def _first_in(cuts: list[int], low: int, high: int) -> int | None:
    """The smallest cut in [low, high), or None."""
    i = bisect.bisect_left(cuts, low)
    return cuts[i] if i < len(cuts) and cuts[i] < high else None


def split(
    data: bytes,
    *,
    min_size: int = MIN_CHUNK,
    avg_size: int = AVG_CHUNK,
    max_size: int = MAX_CHUNK,
) -> list[Chunk]:
    """Cut ``data`` into contiguous chunks that cover it exactly.

    Every chunk but the last is at least ``min_size`` bytes; every chunk is at most ``max_size``.
    Raises ValueError for sizes outside ``WINDOW <= min_size <= avg_size <= max_size``.
    """
    _check_sizes(min_size, avg_size, max_size)
    view = memoryview(data)
    n = len(view)
    if n == 0:
        return []
    strict = (1 << 64) // (4 * avg_size)
    loose = (4 << 64) // avg_size  # < 2**64 since avg_size >= WINDOW
    strict_cuts, loose_cuts = _candidates(np.frombuffer(view, dtype=np.uint8), strict, loose)

    chunks: list[Chunk] = []
    start = 0
    while start < n:
        if n - start <= min_size:
            end = n
        else:
            normal = start + avg_size
            limit = min(start + max_size, n)
            cut = _first_in(strict_cuts, start + min_size, min(normal, limit + 1))
            if cut is None:
                cut = _first_in(loose_cuts, normal, limit + 1)
            end = limit if cut is None else cut
        digest = hashlib.sha256(view[start:end]).hexdigest()
        chunks.append(Chunk(sha256=digest, offset=start, length=end - start))
        start = end
    return chunks


def chunk_bytes(data: bytes, chunk: Chunk) -> bytes:
    """The bytes of ``chunk`` within ``data`` (the file it was split from)."""
    return bytes(data[chunk.offset : chunk.offset + chunk.length])

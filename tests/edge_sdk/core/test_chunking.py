"""Content-defined chunking: exact cover, bounds, determinism, and re-use after edits."""

from __future__ import annotations

import hashlib
import random
import statistics

import pytest

from edge_sdk.core.chunking import (
    _GEAR,
    AVG_CHUNK,
    MAX_CHUNK,
    MIN_CHUNK,
    WINDOW,
    Chunk,
    chunk_bytes,
    split,
)


def random_bytes(n: int, seed: int) -> bytes:
    # random.Random's byte stream is fixed for a given seed across Python versions.
    return random.Random(seed).randbytes(n)


def counter_bytes(n: int, seed: bytes) -> bytes:
    """sha256 in counter mode: the same bytes everywhere, whatever the library versions."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(seed + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:n])


def check_cover(data: bytes, chunks: list[Chunk]) -> None:
    offset = 0
    for c in chunks:
        assert c.offset == offset
        assert c.length > 0
        assert c.sha256 == hashlib.sha256(chunk_bytes(data, c)).hexdigest()
        offset += c.length
    assert offset == len(data)
    assert b"".join(chunk_bytes(data, c) for c in chunks) == data


def reference_split(data: bytes, min_size: int, avg_size: int, max_size: int) -> list[int]:
    """The algorithm byte by byte, as the docstring defines it: cut offsets (chunk ends)."""
    gear = [int(v) for v in _GEAR]
    mask = (1 << 64) - 1
    hashes = []
    h = 0
    for byte in data:
        h = ((h << 1) + gear[byte]) & mask
        hashes.append(h)
    strict, loose = (1 << 64) // (4 * avg_size), (4 << 64) // avg_size
    ends, start, n = [], 0, len(data)
    while start < n:
        end = min(start + max_size, n)
        if n - start > min_size:
            for cut in range(start + min_size, end + 1):
                if hashes[cut - 1] < (strict if cut - start < avg_size else loose):
                    end = cut
                    break
        ends.append(end)
        start = end
    return ends


def test_empty_data_has_no_chunks() -> None:
    assert split(b"") == []


@pytest.mark.parametrize("size", [1, 100, MIN_CHUNK, MIN_CHUNK + 1, MAX_CHUNK, 3_000_001])
def test_chunks_cover_the_data_exactly(size: int) -> None:
    data = random_bytes(size, seed=size)
    chunks = split(data)
    check_cover(data, chunks)
    assert all(c.length >= MIN_CHUNK for c in chunks[:-1])
    assert all(c.length <= MAX_CHUNK for c in chunks)


def test_data_without_cut_points_is_cut_at_max_size() -> None:
    data = bytes(MAX_CHUNK * 3 + 5)  # zeros: every window hashes alike, never below threshold
    chunks = split(data)
    check_cover(data, chunks)
    assert [c.length for c in chunks] == [MAX_CHUNK, MAX_CHUNK, MAX_CHUNK, 5]


@pytest.mark.parametrize(("min_size", "avg_size", "max_size"), [(64, 256, 1024), (64, 64, 64)])
def test_small_sizes_keep_the_bounds(min_size: int, avg_size: int, max_size: int) -> None:
    data = random_bytes(200_000, seed=7)
    chunks = split(data, min_size=min_size, avg_size=avg_size, max_size=max_size)
    check_cover(data, chunks)
    assert all(c.length >= min_size for c in chunks[:-1])
    assert all(c.length <= max_size for c in chunks)


def test_vectorized_hash_matches_the_byte_by_byte_definition() -> None:
    # Spans several internal blocks (1 MiB each) so block seams are covered too.
    data = random_bytes(2_200_000, seed=11)
    sizes = {"min_size": 256, "avg_size": 4096, "max_size": 16384}
    ends = [c.offset + c.length for c in split(data, **sizes)]
    assert ends == reference_split(data, 256, 4096, 16384)


def test_split_is_deterministic() -> None:
    data = random_bytes(1_000_000, seed=3)
    assert split(data) == split(bytes(data)) == split(data)


def test_average_chunk_size_is_near_avg_size() -> None:
    data = random_bytes(8 << 20, seed=5)
    mean = statistics.mean(c.length for c in split(data)[:-1])
    # Normalized chunking lands a little above avg_size on random data (~73 KiB for 64 KiB).
    assert AVG_CHUNK * 0.75 <= mean <= AVG_CHUNK * 1.5


def test_edits_reuse_most_chunks() -> None:
    original = random_bytes(4 << 20, seed=9)
    edited = bytearray(original)
    middle = len(edited) // 2
    edited[middle : middle + 1024] = random_bytes(1024, seed=10)
    edited[1000:1000] = random_bytes(100, seed=12)  # shifts everything after it
    new = bytes(edited)

    known = {c.sha256 for c in split(original)}
    chunks = split(new)
    check_cover(new, chunks)
    reused = sum(c.length for c in chunks if c.sha256 in known)
    assert reused / len(new) >= 0.90


def test_known_answer_pins_the_protocol() -> None:
    """Chunk names are protocol: if this fails, devices stop re-using chunks across versions."""
    data = counter_bytes(1 << 20, b"edge-sdk chunking known answer")
    chunks = split(data)
    assert [c.offset for c in chunks] == KNOWN_OFFSETS
    assert chunks[0].sha256 == KNOWN_FIRST_SHA256
    gear_digest = hashlib.sha256(_GEAR.astype(">u8").tobytes()).hexdigest()
    assert gear_digest == KNOWN_GEAR_SHA256


KNOWN_OFFSETS = [
    0, 63451, 103479, 201054, 261525, 337664, 415920, 508572,
    610218, 677662, 756054, 779465, 860794, 929942, 1008638,
]  # fmt: skip
KNOWN_FIRST_SHA256 = "a6afa4ac7820d03acfc03a3eb173b222767323092c55de711a11588897bc728d"
KNOWN_GEAR_SHA256 = "2dc610b8ccc85dea16f9d3c057e885139645401f609d8bcc6b227c4d8360f52d"


@pytest.mark.parametrize(
    ("min_size", "avg_size", "max_size"),
    [(WINDOW - 1, 128, 256), (256, 128, 512), (64, 512, 256), (0, 0, 0), (64, 128.0, 256)],
)
def test_nonsense_sizes_are_refused(min_size: int, avg_size: int, max_size: int) -> None:
    with pytest.raises(ValueError, match="size"):
        split(b"abc", min_size=min_size, avg_size=avg_size, max_size=max_size)

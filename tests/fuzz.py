"""A seeded, bounded fuzz loop for every parser a remote party or a file can reach.

Hypothesis explores structure (``tests/*/test_*_properties.py``); this loop throws thousands of
byte-level mutations of *valid* inputs at a parser, the way a fuzzer such as AFL does: bit and
byte flips, truncation, splices, repeated and deleted runs, interesting integers and JSON
tokens. It is deterministic for a seed, so a failure in CI reproduces here with the same call.

    for case in mutations(seed=11, seeds=[valid_bytes], count=2000):
        outcome = parse(case)          # must return or raise one of *our* errors, nothing else
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence

# Raise locally with EDGE_SDK_FUZZ_COUNT=100000; CI runs the default.
DEFAULT_COUNT = int(os.environ.get("EDGE_SDK_FUZZ_COUNT", "2000"))

_TOKENS: tuple[bytes, ...] = (
    b"0",
    b"-1",
    b"1e999",
    b"-1e999",
    b"NaN",
    b"Infinity",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'""',
    b"9" * 400,
    b"[" * 64,
    b"{" * 64,
    b"\x00",
    b"\xff\xfe",
    b"\\u0000",
    b'"\\ud800"',
    b"4294967296",
    b"18446744073709551616",
    b"0.1",
    b"PK\x03\x04",
    b"\x93NUMPY",
)


def _mutate(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # overwrite a byte
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 2:  # truncate
            del buf[at:]
        elif op == 3 and buf:  # delete a run
            del buf[at : at + rng.randint(1, 16)]
        elif op == 4:  # insert a token
            buf[at:at] = rng.choice(_TOKENS)
        elif op == 5 and buf:  # repeat a run
            end = min(len(buf), at + rng.randint(1, 32))
            buf[at:at] = bytes(buf[at:end]) * rng.randint(2, 8)
        elif op == 6:  # splice in part of another seed
            other = rng.choice(pool)
            if other:
                start = rng.randrange(len(other))
                buf[at:at] = other[start : start + rng.randint(1, 64)]
        else:  # random bytes
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
    return bytes(buf)


def mutations(*, seed: int, seeds: Sequence[bytes], count: int = DEFAULT_COUNT) -> Iterator[bytes]:
    """``count`` inputs derived from ``seeds``: the seeds themselves first, then mutations."""
    if not seeds:
        raise ValueError("mutations() needs at least one valid seed input")
    rng = random.Random(seed)
    yield from seeds
    for _ in range(max(0, count - len(seeds))):
        yield _mutate(rng, rng.choice(seeds), seeds)

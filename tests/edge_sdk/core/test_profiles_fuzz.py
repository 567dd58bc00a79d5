"""Hostile profile files: byte-level mutations of every built-in profile, and generated TOML
documents, reach the loader; only a one-line ProfileError may come out, in bounded memory."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from edge_sdk.core.profiles import builtin_profile_dir, load_profile_file, parse_profile
from edge_sdk.errors import ProfileError
from tests.fuzz import mutations

SEEDS = [p.read_bytes() for p in sorted(builtin_profile_dir().glob("*.toml"))]


def _check(profile_or_error: Any) -> None:
    if isinstance(profile_or_error, ProfileError):
        message = str(profile_or_error)
        assert message and "\n" not in message
        return
    image = profile_or_error.image
    assert math.isfinite(image.scale) and image.scale > 0
    assert all(math.isfinite(v) and v > 0 for v in image.std)
    assert 0 <= profile_or_error.quantization.mixed_precision_steps <= 16


def _load(path: Path) -> Any:
    try:
        return load_profile_file(path)
    except ProfileError as e:
        return e


def test_mutated_profile_files_give_a_profile_or_one_line(tmp_path: Path) -> None:
    path = tmp_path / "board.toml"
    tracemalloc.start()
    try:
        for case in mutations(seed=15, seeds=SEEDS, count=2000):
            path.write_bytes(case)
            _check(_load(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=20),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "id",
        "description",
        "arch",
        "runtime",
        "providers",
        "delegates",
        "precisions",
        "selection",
        "opset",
        "threads",
        "quantization",
        "budget",
        "accuracy_budget",
        "image",
        "unknown",
    ]
)


@given(overrides=st.dictionaries(KEYS, VALUES, max_size=4))
def test_generated_documents_give_a_profile_or_one_line(overrides: dict[str, Any]) -> None:
    import tomllib

    document = tomllib.loads(SEEDS[0].decode())
    document.update(overrides)
    try:
        result: Any = parse_profile(document, "generated.toml")
    except ProfileError as e:
        result = e
    _check(result)


@given(
    table=st.sampled_from(["quantization", "budget", "accuracy_budget", "image"]),
    key=st.sampled_from(
        [
            "scale",
            "mean",
            "std",
            "mixed_precision_steps",
            "calibration_samples",
            "memory_mb",
            "min_cosine",
        ]
    ),
    value=VALUES,
)
def test_generated_table_values_give_a_profile_or_one_line(
    table: str, key: str, value: Any
) -> None:
    import tomllib

    document = tomllib.loads(SEEDS[-1].decode())
    document.setdefault(table, {})[key] = value
    try:
        result: Any = parse_profile(document, "generated.toml")
    except ProfileError as e:
        result = e
    _check(result)

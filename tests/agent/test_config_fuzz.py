"""Hostile agent.toml files: byte-level mutations of real configs, and generated documents,
reach the loader; only a one-line ConfigError may come out, in bounded memory."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import AgentConfig, load_config, parse_config
from edge_sdk.errors import ConfigError
from tests.agent.test_config import FULL, MINIMAL
from tests.fuzz import mutations


@pytest.fixture()
def conf_dir(tmp_path: Path) -> Path:
    for name in ("root.json", "ca.pem", "device.pem", "device.key"):
        (tmp_path / name).write_text("x")
    return tmp_path


def _check(result: Any) -> None:
    if isinstance(result, ConfigError):
        message = str(result)
        assert message and "\n" not in message
        return
    assert isinstance(result, AgentConfig)
    assert 0 < result.broker.port < 65536
    for value in (result.broker.fetch_timeout_s, result.report.interval_s):
        assert math.isfinite(value) and 0 < value <= 1e9
    assert result.report.interval_s <= result.report.max_interval_s <= 1e9


def test_mutated_configs_give_a_config_or_one_line(conf_dir: Path) -> None:
    path = conf_dir / "agent.toml"
    seeds = [FULL.encode(), MINIMAL.encode()]
    tracemalloc.start()
    try:
        for case in mutations(seed=15, seeds=seeds, count=2000):
            path.write_bytes(case)
            try:
                result: Any = load_config(path)
            except ConfigError as e:
                result = e
            _check(result)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=24),
    st.sampled_from(["mqtt://h:0", "mqtts://h:65536", "mqtt://h:1883", "x86-64", "", "a/b"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
TABLE_KEYS = {
    "broker": ["url", "keepalive_s", "reconnect_min_s", "reconnect_max_s", "fetch_timeout_s"],
    "probation": ["seconds", "max_restarts", "check_interval_s", "max_error_rate"],
    "limits": ["max_metadata_bytes", "max_chunk_bytes", "keep_versions", "min_free_bytes"],
    "report": ["interval_s", "max_interval_s", "cpu_deadband", "memory_deadband", "disk_deadband"],
    "serving": ["listen", "max_body_bytes", "threads"],
}


@given(
    top=st.dictionaries(
        st.sampled_from(["device_id", "fleet", "group", "profile", "models", "x"]),
        VALUES,
        max_size=2,
    ),
    table=st.sampled_from(sorted(TABLE_KEYS)),
    data=st.data(),
)
def test_generated_documents_give_a_config_or_one_line(
    tmp_path_factory: pytest.TempPathFactory,
    top: dict[str, Any],
    table: str,
    data: st.DataObject,
) -> None:
    import tomllib

    directory = tmp_path_factory.getbasetemp() / "fuzz-conf"
    directory.mkdir(exist_ok=True)
    (directory / "root.json").write_text("x")
    document = tomllib.loads(MINIMAL)
    document.update(top)
    key = data.draw(st.sampled_from(TABLE_KEYS[table]))
    document.setdefault(table, {})
    if isinstance(document[table], dict):
        document[table][key] = data.draw(VALUES)
    try:
        result: Any = parse_config(document, directory / "agent.toml")
    except ConfigError as e:
        result = e
    _check(result)

"""agent.toml's shared value rules on the core's strict reader: bounded integers and numbers,
identifiers and paths relative to the file, each refused in one line naming file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import LimitsConfig
from agent.config_values import MAX_INTEGER, ConfigTable, keys_of
from edge_sdk.errors import ConfigError


def table(values: dict[str, Any]) -> ConfigTable:
    return ConfigTable.top({"t": values}, "agent.toml", ("t",), {}).table("t")


def refused(call: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        call()
    assert str(info.value).startswith("agent.toml: t.") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_integers() -> None:
    assert table({}).integer("n", 7, 0) == 7
    assert table({"n": 3}).integer("n", 7, 0, 5) == 3
    refused(
        lambda: table({"n": 6}).integer("n", 7, 0, 5), "t.n: must be an integer between 0 and 5"
    )
    refused(lambda: table({"n": -1}).integer("n", 7, 0), "must be an integer >= 0, got -1")
    refused(lambda: table({"n": MAX_INTEGER + 1}).integer("n", 7, 0), f"and {MAX_INTEGER}")
    refused(lambda: table({"n": True}).integer("n", 7, 0), "expected an integer, got a boolean")


def test_numbers() -> None:
    assert table({"x": 2}).number("x", 1.0, positive=True) == 2.0
    refused(lambda: table({"x": 0}).number("x", 1.0, positive=True), "must be a finite number > 0")
    refused(lambda: table({"x": -0.5}).number("x", 1.0, positive=False), ">= 0, got -0.5")
    refused(lambda: table({"x": float("nan")}).number("x", 1.0, positive=False), "finite")
    refused(lambda: table({"x": 2e9}).number("x", 1.0, positive=False), "at most 1e+09")


def test_identifiers() -> None:
    assert table({}).identifier("fleet", "default") == "default"
    refused(lambda: table({}).identifier("id", None), 't.id: missing; set it, e.g. t.id = "cam-01"')
    refused(lambda: table({"id": "a/b"}).identifier("id", None), "t.id: 'a/b' must be")


def test_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    t = table({"ca": "ca.pem", "dir": "~/state", "empty": ""})
    assert t.path("ca", tmp_path, "ca.pem", required=True, must_exist=True) == tmp_path / "ca.pem"
    assert t.path("dir", tmp_path, "s", required=True, must_exist=False) == Path.home() / "state"
    assert t.path("none", tmp_path, "x", required=False, must_exist=True) is None
    refused(lambda: t.path("empty", tmp_path, "x", required=False, must_exist=False), "empty")
    missing = table({"ca": "no.pem"})
    refused(lambda: missing.path("ca", tmp_path, "x", required=True, must_exist=True), "no.pem")
    refused(
        lambda: table({}).path("ca", tmp_path, "x.pem", required=True, must_exist=True), '"x.pem"'
    )


def test_keys_of_a_section() -> None:
    assert keys_of(LimitsConfig, skip=("keep_versions",)) == (
        "max_metadata_bytes",
        "max_chunk_bytes",
        "max_artifact_bytes",
        "min_free_bytes",
    )

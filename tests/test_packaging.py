"""The install stays light where SPEC says it must: the device never pulls in TensorFlow, torch
or onnx2tf, and the base host install does not need TensorFlow either."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
HEAVY = {"tensorflow", "tensorflow-cpu", "torch", "onnx2tf", "tf-keras", "keras"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_agent_extra_has_no_heavy_frameworks() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not _names(extras["agent"]) & HEAVY
    assert not _names(PYPROJECT["project"]["dependencies"]) & HEAVY


def test_host_extra_needs_no_tensorflow() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not _names(extras["host"]) & HEAVY
    assert "tensorflow-cpu" in _names(extras["tflite"])


def test_console_scripts() -> None:
    assert set(PYPROJECT["project"]["scripts"]) == {"edge-sdk", "edge-agent"}

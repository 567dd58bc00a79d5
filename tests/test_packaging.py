"""The install stays light where SPEC says it must: the device never pulls in TensorFlow, torch
or onnx2tf, and the base host install does not need TensorFlow either.

The device extras are checked against the real dependency tree, resolved by pip from the
package index (``pip install --dry-run --report``): a runtime's own dependencies (onnxruntime
once pulled sympy) count as much as ours."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
HEAVY = {"tensorflow", "tensorflow-cpu", "torch", "onnx2tf", "tf-keras", "keras"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_agent_extra_has_no_heavy_frameworks() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    for extra in ("agent", "agent-tflite", "agent-all", "agent-base"):
        assert not _names(extras[extra]) & HEAVY, extra
    assert not _names(PYPROJECT["project"]["dependencies"]) & (HEAVY | NOT_ON_A_DEVICE)


# Never in a device install: build tooling, and the host CLI's framework.
NOT_ON_A_DEVICE = {"tensorflow", "tensorflow-cpu", "tf-keras", "keras", "torch", "onnx"}
NOT_ON_A_DEVICE |= {"onnx2tf", "sympy", "typer", "rich", "pydantic"}
RUNTIMES = {"onnxruntime", "ai-edge-litert", "tflite-runtime"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


PIP_DRY_RUN = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
PIP_DRY_RUN += ["--quiet", "--disable-pip-version-check"]


def resolve(requirement: str, report: Path) -> set[str]:
    """What ``pip install requirement`` would install in an empty environment."""
    done = subprocess.run(
        [*PIP_DRY_RUN, "--report", str(report), requirement],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {_canonical(i["metadata"]["name"]) for i in json.loads(report.read_text())["install"]}


@pytest.mark.parametrize(
    ("extra", "runtimes"),
    [
        ("agent", {"onnxruntime"}),
        ("agent-tflite", {"ai-edge-litert"}),
        ("agent-all", {"onnxruntime", "ai-edge-litert"}),
    ],
)
def test_a_device_install_resolves_to_its_runtimes_and_nothing_heavy(
    tmp_path: Path, extra: str, runtimes: set[str]
) -> None:
    installed = resolve(f".[{extra}]", tmp_path / "report.json")
    assert {"edgesdk-fleet", "paho-mqtt", "uvicorn", "numpy"} <= installed
    assert installed & RUNTIMES == runtimes
    assert not installed & NOT_ON_A_DEVICE, sorted(installed & NOT_ON_A_DEVICE)


def test_the_host_install_brings_the_cli_framework() -> None:
    host = _names(PYPROJECT["project"]["optional-dependencies"]["host"])
    assert {"typer", "rich", "onnx"} <= host


def test_host_extra_needs_no_tensorflow() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not _names(extras["host"]) & HEAVY
    assert "tensorflow-cpu" in _names(extras["tflite"])


def test_console_scripts() -> None:
    assert set(PYPROJECT["project"]["scripts"]) == {"edge-sdk", "edge-agent"}

"""Which extra installs a missing dependency, and what ``--version`` says: the one line a user
without the right extra gets, and nothing for an import error that is a bug."""

from __future__ import annotations

import sys
from importlib import metadata

import pytest

import edge_sdk
from edge_sdk.core import extras


def _missing(name: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(f"No module named '{name}'", name=name)


def test_a_missing_optional_dependency_names_its_extra_and_the_pip_line() -> None:
    distribution = extras.distribution_name()
    assert extras.missing_extra_line(_missing("onnx.checker"), "edge-sdk") == (
        "error: edge-sdk needs the 'host' extra here (onnx is not installed): "
        f"pip install '{distribution}[host]'"
    )


@pytest.mark.parametrize(
    "error",
    [
        _missing("numpy"),  # a base dependency: a broken install, not a missing extra
        _missing("edge_sdk.cli._report"),  # our own module: a bug
        ImportError("cannot import name 'x' from 'onnx'", name="onnx"),  # installed, but broken
        ModuleNotFoundError("no name given"),
    ],
)
def test_an_import_error_that_no_extra_fixes_gets_no_advice(error: ImportError) -> None:
    assert extras.missing_extra_line(error, "edge-sdk") is None


def test_the_distribution_name_comes_from_the_metadata_or_the_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = metadata.packages_distributions().get("edge_sdk") or [extras.FALLBACK_DISTRIBUTION]
    assert extras.distribution_name() == installed[0]

    def broken() -> dict[str, list[str]]:
        raise OSError("unreadable site-packages")

    monkeypatch.setattr(metadata, "packages_distributions", broken)
    assert extras.distribution_name() == extras.FALLBACK_DISTRIBUTION


def test_the_version_line_and_its_json() -> None:
    info = extras.version_info("edge-agent")
    python = ".".join(map(str, sys.version_info[:3]))
    assert info == {
        "command": "edge-agent",
        "version": edge_sdk.__version__,
        "distribution": extras.distribution_name(),
        "python": python,
    }
    assert extras.version_line("edge-agent") == (
        f"edge-agent {edge_sdk.__version__} ({info['distribution']}, Python {python})"
    )

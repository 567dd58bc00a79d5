"""The pass interface and the registry that recipes look passes up in."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_sdk.core.profiles import HardwareProfile
from edge_sdk.errors import BuildError


@dataclass(frozen=True)
class PassContext:
    profile: HardwareProfile
    workdir: Path
    # Named input arrays with samples on the first axis; used by calibrating passes.
    calibration: Mapping[str, np.ndarray]
    # Per-candidate settings a recipe passes down (calibration method, nodes kept in float, ...).
    options: Mapping[str, Any] = field(default_factory=dict)
    # One line per route a pass tried (and why one failed), for the build report.
    routes: list[str] = field(default_factory=list)


class ConversionPass(Protocol):
    name: str

    def __call__(self, source: Path, target: Path, context: PassContext) -> None:
        """Read the model at ``source`` and write the converted model to ``target``."""


PASSES: dict[str, ConversionPass] = {}


def register(name: str) -> Callable[[Callable[[Path, Path, PassContext], None]], ConversionPass]:
    def wrap(function: Callable[[Path, Path, PassContext], None]) -> ConversionPass:
        function.name = name  # type: ignore[attr-defined]
        PASSES[name] = function  # type: ignore[assignment]
        return function  # type: ignore[return-value]

    return wrap


def get_pass(name: str) -> ConversionPass:
    try:
        return PASSES[name]
    except KeyError:
        raise BuildError(f"no conversion pass named '{name}' (known: {sorted(PASSES)})") from None


def failure(pass_name: str, error: Exception) -> BuildError:
    """One line for a pass that failed inside a foreign library."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return BuildError(f"pass '{pass_name}' failed: {message}")

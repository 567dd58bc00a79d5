"""Failpoints: faults a test injects into a real agent, read from ``EDGE_AGENT_FAILPOINTS``.

In the style of etcd's gofail and libfiu, fault injection is not product configuration: it lives
in the environment of the process under test, is read only when that variable is set, and
``agent.toml`` holds only product settings. The variable holds ``NAME=VALUE`` terms separated
by ``;``::

    EDGE_AGENT_FAILPOINTS="crash_at=verifying"
    EDGE_AGENT_FAILPOINTS="crash_at=download;crash_after_chunks=2"
    EDGE_AGENT_FAILPOINTS="bench_slow_precision=int8_static;bench_slow_ms=20"

A malformed value is one line and the agent refuses to start, as for a bad config (exit 2):
a failpoint that silently did not fire would let a power-cut test pass without a power cut.
This module is pure: :func:`parse_failpoints` takes the text, :func:`failpoints_from_environ`
the environment; ``edge-agent run`` hands what it found to the daemon.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from agent.config_values import MAX_INTEGER, MAX_NUMBER
from edge_sdk.errors import ConfigError

ENV = "EDGE_AGENT_FAILPOINTS"
# Step and precision names: what the daemon compares them with is made of these.
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")


@dataclass(frozen=True)
class Failpoints:
    """Every failpoint, off by default."""

    # SIGKILL at this step of an update, as a power cut would: a journal state ("verifying",
    # "probation", ...) or a moment between an action and its journal entry ("download",
    # "installed", "switched", "pruning", "rolled_back_switch"); see agent.daemon.crash_point.
    crash_at: str = ""
    crash_after_chunks: int = 0  # with crash_at=download: after this many chunks are stored
    disk_full_after_bytes: int = 0  # chunk writes fail with ENOSPC past this many bytes
    chunk_delay_s: float = 0.0  # pause after each stored chunk, to cut a download mid-way
    # Benchmark jobs: each run of a candidate of this precision takes this much longer, a
    # device on which that precision is slow (agent.bench_job).
    bench_slow_precision: str = ""
    bench_slow_ms: float = 0.0

    def to_env(self) -> str:
        """The variable's value that gives these failpoints ("" when all are off)."""
        values = ((f.name, getattr(self, f.name), f.default) for f in fields(self))
        # repr() of a float reads back as the same float; str() of a name or integer is itself.
        return ";".join(
            f"{name}={value!r}" if isinstance(value, float) else f"{name}={value}"
            for name, value, off in values
            if value != off
        )


OFF = Failpoints()
NAMES = tuple(f.name for f in fields(Failpoints))
_KINDS: Mapping[str, type] = {f.name: type(getattr(OFF, f.name)) for f in fields(Failpoints)}


def _fail(message: str) -> ConfigError:
    return ConfigError(f"{ENV}: {message}; fix it, or unset {ENV} to run without failpoints")


def _value(name: str, text: str) -> Any:
    kind = _KINDS[name]
    if kind is str:
        if not _NAME.match(text):
            raise _fail(f"{name}={text!r} must be 1-64 letters, digits, '.', '_' or '-'")
        return text
    if kind is int:
        # isdigit() alone lets through "²" and 5,000-digit numbers int() refuses to parse.
        if not (text.isascii() and text.isdigit() and len(text) <= 16) or int(text) > MAX_INTEGER:
            raise _fail(f"{name}={text!r} must be an integer between 0 and {MAX_INTEGER}")
        return int(text)
    try:
        number = float(text) if text.isascii() and "_" not in text else math.nan
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and 0 <= number <= MAX_NUMBER):
        raise _fail(f"{name}={text!r} must be a number between 0 and {MAX_NUMBER:g}")
    return number


def parse_failpoints(text: str) -> Failpoints:
    """``NAME=VALUE`` terms separated by ``;`` (blanks around them and empty terms allowed);
    each name at most once. Every problem is a one-line ConfigError naming the variable."""
    found: dict[str, Any] = {}
    for term in text.split(";"):
        term = term.strip()
        if not term:
            continue
        name, equals, value = term.partition("=")
        name, value = name.strip(), value.strip()
        if not equals:
            raise _fail(f"{term!r} is not NAME=VALUE (e.g. crash_at=verifying)")
        if name not in _KINDS:
            hint = difflib.get_close_matches(name, NAMES, n=1)
            advice = f"did you mean '{hint[0]}'?" if hint else f"failpoints: {', '.join(NAMES)}"
            raise _fail(f"{name!r} is not a failpoint ({advice})")
        if name in found:
            raise _fail(f"{name} is set twice")
        found[name] = _value(name, value)
    return replace(OFF, **found)


def failpoints_from_environ(environ: Mapping[str, str]) -> Failpoints:
    """The failpoints ``environ`` sets: all off unless ``EDGE_AGENT_FAILPOINTS`` is there."""
    text = environ.get(ENV)
    return OFF if text is None else parse_failpoints(text)

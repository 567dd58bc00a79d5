"""``fleet publish`` progress: a live bar on a terminal; in a log, a plain line every few
seconds and one at the end, never a screenful of redraw codes."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from edge_sdk.cli import _publish_progress
from edge_sdk.cli._publish_progress import PublishProgress
from edge_sdk.fleet.publish import SendProgress

MIB = 1 << 20


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=100), out


def _send(progress: PublishProgress, *done: int, total: int = 4) -> None:
    for chunks in done:
        progress(SendProgress(chunks, total, chunks * MIB, total * MIB))


def test_a_log_gets_a_plain_line_every_few_seconds_and_the_last_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([100.0, 100.5, 103.0, 103.1])
    # This module's clock only: rich reads the real one.
    monkeypatch.setattr(_publish_progress, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    console, out = _console(terminal=False)
    with PublishProgress(console) as progress:
        _send(progress, 1, 2, 3, 4)  # at 100 s, 100.5 s (too soon), 103 s, 103.1 s (the last)
    assert out.getvalue().splitlines() == [
        "  chunks acknowledged: 1/4 (1.0 MiB/4.0 MiB)",
        "  chunks acknowledged: 3/4 (3.0 MiB/4.0 MiB)",
        "  chunks acknowledged: 4/4 (4.0 MiB/4.0 MiB)",
    ]


def test_without_plain_lines_a_log_gets_nothing() -> None:
    # --json: stdout is the document, and a log gets no progress chatter either.
    console, out = _console(terminal=False)
    with PublishProgress(console, plain_lines=False) as progress:
        _send(progress, 1, 4)
    assert out.getvalue() == ""


def test_a_terminal_gets_a_bar_that_is_gone_when_done() -> None:
    console, out = _console(terminal=True)
    with PublishProgress(console) as progress:
        _send(progress, 1, 2, 3, 4)
    assert "chunks acknowledged" not in out.getvalue()  # the bar, not plain lines
    assert "chunks 4/4" in out.getvalue()  # drawn as it went, then cleared (transient)

"""``fleet publish`` progress on stderr: a live bar on a terminal, a plain line every few seconds
otherwise (a log or CI keeps a readable record, not a screenful of redraw codes)."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from edge_sdk.fleet.publish import SendProgress

PLAIN_EVERY_S = 2.0


class PublishProgress:
    """A ``send`` progress callback; use as a context manager so the bar is closed cleanly."""

    def __init__(self, console: Console, *, plain_lines: bool = True) -> None:
        self._console = console
        # Plain lines are for people reading a log; --json callers get the bar only on a tty.
        self._plain = plain_lines and not console.is_terminal
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._last_line = 0.0

    def __enter__(self) -> PublishProgress:
        if self._console.is_terminal:
            self._bar = Progress(
                TextColumn("chunks {task.fields[chunks]}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self._console,
                transient=True,
            )
            self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, p: SendProgress) -> None:
        chunks = f"{p.chunks_done}/{p.chunks_total}"
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task("publish", total=p.bytes_total, chunks=chunks)
            self._bar.update(self._task, completed=p.bytes_done, chunks=chunks)
            return
        now = time.monotonic()
        if self._plain and (
            p.chunks_done == p.chunks_total or now - self._last_line >= PLAIN_EVERY_S
        ):
            self._last_line = now
            self._console.print(
                f"  chunks acknowledged: {chunks} ({_mib(p.bytes_done)}/{_mib(p.bytes_total)})",
                highlight=False,
            )


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"

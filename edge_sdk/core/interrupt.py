"""Ctrl-C and SIGTERM for the command-line tools: one line, exit 130 or 143, nothing left behind.

Normally both unwind like an exception (KeyboardInterrupt, :class:`Terminated`), so every
``with`` block (temporary build folders, atomic writes, locks) cleans up on the way out. The one
place where unwinding is unsafe is inside an import: an exception raised while numpy, onnx or
onnxruntime initialise comes out as "ImportError: initialization failed", or crashes the
process in native code. A signal that lands inside an import therefore runs the cleanups
registered with :func:`on_abrupt_exit` and exits at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM

_CLEANUPS: list[Callable[[], None]] = []


class Terminated(BaseException):
    """SIGTERM, raised in the main thread. A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way can swallow it."""


def message(code: int) -> str:
    return "interrupted" if code == EXIT_INTERRUPTED else "terminated"


def say(code: int) -> None:
    """The one line for Ctrl-C or SIGTERM, straight to fd 2: ``sys.stderr`` may be a proxy
    (rich's live status) that buffers lines for a render thread that may never run again."""
    with contextlib.suppress(OSError):
        os.write(2, (message(code) + "\n").encode())


@contextlib.contextmanager
def on_abrupt_exit(action: Callable[[], None]) -> Iterator[None]:
    """Run ``action`` if the process has to exit without unwinding while the block runs."""
    _CLEANUPS.append(action)
    try:
        yield
    finally:
        _CLEANUPS.remove(action)


def _in_import(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _handle(signum: int, frame: FrameType | None) -> None:
    code = EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED
    if not _in_import(frame):
        raise KeyboardInterrupt if code == EXIT_INTERRUPTED else Terminated
    for action in reversed(_CLEANUPS):
        with contextlib.suppress(Exception):
            action()
    say(code)
    os._exit(code)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Install the handlers for SIGINT and SIGTERM while the block runs (main thread only;
    elsewhere nothing changes), then put the previous ones back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

"""Foreign text (an exception's message, a file's key, a peer's reason) made fit to quote in
one of our one-line errors, log lines and HTTP answers: whitespace and newlines collapsed, cut
to a limit. The one place this is done, so every message obeys the same rule."""

from __future__ import annotations


def one_line(text: object, limit: int = 200) -> str:
    """``text`` on one line of at most ``limit`` characters (cut ones end in "…")."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def error_line(error: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, or its type's name when it says nothing."""
    return one_line(error, limit) or type(error).__name__

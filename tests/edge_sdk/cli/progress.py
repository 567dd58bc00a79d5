"""Telling ``edge-sdk build``'s plain progress lines from its messages in captured stderr."""

from __future__ import annotations

import re

# "[   3.2s] building candidate fp16": what a build prints per stage when stderr is no terminal.
PROGRESS_LINE = re.compile(r"^\[\s*\d+\.\ds\] \S")


def messages(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are not progress lines."""
    return [line for line in stderr.strip().splitlines() if not PROGRESS_LINE.match(line)]

"""The process entry both commands share (``edge-sdk``, ``edge-agent``): exit with the command's
code, and Ctrl-C or SIGTERM at any moment, imports included, is one line and 130 or 143.

Standard library only and outside ``edge_sdk.cli``, so the agent's entry point imports none of
the host command line (import-linter contract in pyproject.toml).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence


def guarded_main(run_argv: Callable[[Sequence[str]], int]) -> None:
    """Exit with ``run_argv(argv)``; Ctrl-C or SIGTERM before the command starts (while
    importing) is the same one line and exit 130 or 143 as during it."""
    try:
        from edge_sdk.core.interrupt import Terminated, handled

        try:
            with handled():
                code = run_argv(sys.argv[1:])
        except Terminated:
            code = 143
            os.write(2, b"terminated\n")
    except KeyboardInterrupt:  # also before the handlers are in place
        code = 130
        os.write(2, b"interrupted\n")
    sys.exit(code)

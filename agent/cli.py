"""``edge-agent`` command line.

Cheap to import on purpose (see ``edge_sdk.cli``): the commands live in ``agent._cli_app`` and
are imported inside ``run``, so Ctrl-C at any moment is one line and exit 130.
"""

from __future__ import annotations

from edge_sdk.cli import guarded_main

TYPE_CHECKING = False  # not typing's: see edge_sdk/cli/__init__.py
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from agent._cli_app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(argv: Sequence[str]) -> int:
    """Run ``edge-agent`` on ``argv`` and return the exit code instead of exiting."""
    from agent._cli_app import app
    from edge_sdk.cli._common import run_app

    return run_app(app, argv, "edge-agent")


def main() -> None:
    guarded_main(run)

"""``edge-sdk`` command line: one Typer group per module, errors as one line on stderr.

Importing this package is cheap on purpose: the console script imports it before ``main``
runs, and Ctrl-C during a heavy import (typer, rich, numpy) would otherwise end in a
KeyboardInterrupt traceback. ``app`` is built on first use.
"""

from __future__ import annotations

import sys

from edge_sdk.core.entry import guarded_main

# Not typing.TYPE_CHECKING: importing typing takes milliseconds of the window before the
# handlers are in place (mypy treats any TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    import typer

_APP: list[typer.Typer] = []


def _build_app() -> typer.Typer:
    if not _APP:
        from edge_sdk.cli import _conventions
        from edge_sdk.cli._common import new_app

        app = new_app("Build, sign and ship models to edge devices.")
        _conventions.install(app)
        # Each module only registers itself; heavy imports stay inside commands.
        from edge_sdk.cli import (
            broker_cmd,
            build_cmd,
            bundle_cmd,
            fleet_cmd,
            keys_cmd,
            profiles_cmd,
        )

        profiles_cmd.register(app)
        build_cmd.register(app)
        bundle_cmd.register(app)
        keys_cmd.register(app)
        fleet_cmd.register(app)
        broker_cmd.register(app)
        _APP.append(app)
    return _APP[0]


def __getattr__(name: str) -> Any:
    if name == "app":
        return _build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(argv: Sequence[str]) -> int:
    """Run ``edge-sdk`` on ``argv`` and return the exit code instead of exiting."""
    if list(argv) == ["--version"]:
        # Without typer too (a device install has the command but not the host extra).
        from edge_sdk.core.extras import version_line

        sys.stdout.write(version_line("edge-sdk") + "\n")
        return 0
    try:
        from edge_sdk.cli._common import run_app

        app = _build_app()
    except ImportError as e:
        # typer or rich missing (a device install): one line naming the extra, exit 3.
        from edge_sdk.core.extras import missing_extra_line

        line = missing_extra_line(e, "edge-sdk")
        if line is None:
            raise
        sys.stderr.write(line + "\n")
        return 3
    return run_app(app, argv, "edge-sdk")


def main() -> None:
    guarded_main(run)

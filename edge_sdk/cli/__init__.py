"""``edge-sdk`` command line: one Typer group per module, errors as one line on stderr."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from edge_sdk.cli._common import new_app, run_app

app = new_app("Build, sign and ship models to edge devices.")


def _register() -> None:
    # Imported here so each module only registers itself; heavy imports stay inside commands.
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


_register()


def run(argv: Sequence[str]) -> int:
    """Run ``edge-sdk`` on ``argv`` and return the exit code instead of exiting."""
    return run_app(app, argv, "edge-sdk")


def main() -> None:
    sys.exit(run(sys.argv[1:]))

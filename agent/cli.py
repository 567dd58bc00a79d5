"""``edge-agent`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from edge_sdk import __version__
from edge_sdk.cli._common import JsonFlag, emit_json, new_app, run_app, stdout_console

app = new_app("edge-agent: keeps verified models running on this device.")


@app.command("selftest")
def selftest_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle file to check.")],
    trust: Annotated[Path, typer.Option("--trust", help="Pinned trust root (root.json).")],
    json_output: JsonFlag = False,
) -> None:
    """Verify a bundle and run its golden vectors in this device's runtime."""
    from agent.selftest import self_test

    result = self_test(bundle, trust)
    if json_output:
        emit_json(
            {
                "name": result.name,
                "version": result.version,
                "precision": result.precision,
                "passed": result.golden.passed,
                "max_abs_error": result.golden.max_abs_error,
                "detail": result.golden.detail,
            }
        )
    else:
        colour = "green" if result.golden.passed else "red"
        verdict = "passed" if result.golden.passed else "FAILED"
        stdout_console.print(
            f"[{colour}]self-test {verdict}[/] {result.name} v{result.version}: "
            f"{result.golden.detail}"
        )
    if not result.golden.passed:
        raise typer.Exit(7)


@app.command("version")
def version_command() -> None:
    """Print the agent version."""
    stdout_console.print(__version__)


def run(argv: list[str]) -> int:
    return run_app(app, argv, "edge-agent")


def main() -> None:
    sys.exit(run(sys.argv[1:]))

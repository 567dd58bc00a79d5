"""``edge-agent``'s commands (``agent.cli`` is the cheap-to-import entry point)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_sdk import __version__
from edge_sdk.cli._common import JsonFlag, emit_json, new_app, stdout_console

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


ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The agent's agent.toml.", show_default=False)
]


@app.command("run")
def run_command(
    config: ConfigOption,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every step.")] = False,
) -> None:
    """Run the agent: keep the configured models at the version the fleet assigns."""
    import logging

    from agent.config import load_config, prepare_state_dir
    from agent.daemon import Agent, install_signal_handlers

    settings = load_config(config)  # every config problem is one line, before anything starts
    prepare_state_dir(settings)  # a file there, or no write access, is a config problem too
    # force: run_app has already configured logging (quietly, for the one-shot commands).
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("tuf").setLevel(logging.WARNING)  # per-signature INFO chatter
    agent = Agent(settings)
    install_signal_handlers(agent)
    agent.run()


@app.command("status")
def status_command(config: ConfigOption, json_output: JsonFlag = False) -> None:
    """Print this device's local state: versions installed and running, update state."""
    from agent.config import check_state_dir, load_config
    from agent.daemon import local_status

    settings = load_config(config)
    check_state_dir(settings)
    status = local_status(settings)
    if json_output:
        emit_json(status)
        return
    stdout_console.print(
        f"device {status['device']} (fleet {status['fleet']}, {status['profile']})"
    )
    for name, m in status["models"].items():
        reason = f" — {m['reason']}" if m["reason"] else ""
        stdout_console.print(
            f"  {name}: running v{m['version']} (installed {m['installed']}), "
            f"state {m['state']}{reason}"
        )


@app.command("version")
def version_command() -> None:
    """Print the agent version."""
    stdout_console.print(__version__)

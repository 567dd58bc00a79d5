"""``edge-agent`` command line, on the standard library's argparse.

The daemon runs for months on small devices, so its import path carries no CLI framework: no
typer, click's help machinery, rich or pydantic, only what ``run`` needs (tests/agent/
test_cli_conventions.py checks it in a fresh interpreter). The commands live in
``agent.commands`` and are imported after parsing, so ``--help`` and ``--version`` stay cheap
and Ctrl-C at any moment is one line and exit 130.

Errors follow the host CLI's rules: what we raise on purpose (``EdgeSdkError``) is one line on
stderr with its exit code, a usage error is one line and exit 2, anything else is a bug (one
line, exit 70, the traceback only with ``EDGE_SDK_DEBUG=1``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from edge_sdk import __version__
from edge_sdk.core.entry import guarded_main
from edge_sdk.core.text import one_line

TYPE_CHECKING = False  # not typing's: see edge_sdk/cli/__init__.py
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

PROG = "edge-agent"
CONFIG_ENV = "EDGE_AGENT_CONFIG"
DEFAULT_CONFIG = Path("/etc/edge-agent/agent.toml")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SHELLS = ("bash", "zsh", "fish")
EXIT_USAGE = 2
EXIT_BUG = 70


class UsageError(Exception):
    """A command line argparse refused; argparse itself would print the usage and exit."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Keeps verified models running on this device.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = _command(commands, "run", "Run the agent: keep models at the version the fleet assigns.")
    _config_option(run)
    run.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING (the default) or ERROR.",
    )
    run.add_argument(
        "--verbose", "-v", action="store_true", help="Log every step (--log-level INFO)."
    )

    status = _command(commands, "status", "Print versions installed and running, update state.")
    _config_option(status)
    _json_flag(status)

    selftest = _command(
        commands, "selftest", "Verify a bundle and run its golden vectors on this device."
    )
    selftest.add_argument("bundle", type=Path, metavar="BUNDLE", help="Bundle file to check.")
    selftest.add_argument(
        "--trust-root",
        type=Path,
        metavar="ROOT_JSON",
        help="The pinned trust root (root.json), as trust_root in agent.toml. Required.",
    )
    # The old name, before the trust root had one name everywhere: scripts keep working. Silent,
    # unlike edge-sdk's aliases: a failing selftest's stderr stays exactly its one error line.
    selftest.add_argument("--trust", dest="trust_root", type=Path, help=argparse.SUPPRESS)
    _json_flag(selftest)

    version = _command(commands, "version", "Print the agent's version and runtimes.")
    _json_flag(version)

    completion = _command(commands, "completion", "Print a shell completion script.")
    completion.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish.")
    return parser


def _command(commands: argparse._SubParsersAction[Any], name: str, text: str) -> _Parser:
    parser: _Parser = commands.add_parser(name, help=text, description=text)
    return parser


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        metavar="PATH",
        help=f"The agent's agent.toml (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG}).",
    )


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", dest="json_output", action="store_true", help="Print JSON on stdout."
    )


def run(argv: Sequence[str]) -> int:
    """Run ``edge-agent`` on ``argv`` and return the exit code instead of exiting."""
    from edge_sdk.core.interrupt import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, handled, say

    try:
        with handled():
            return _dispatch(argv)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Terminated:
        code = EXIT_TERMINATED
    sys.stderr.flush()
    say(code)
    return code


def _dispatch(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except UsageError as e:
        return _fail(f"error: {e}", EXIT_USAGE)
    except SystemExit as e:  # --help and --version print, then exit 0
        return e.code if isinstance(e.code, int) else 0
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "selftest" and args.trust_root is None:
        return _fail(f"error: selftest needs --trust-root (see {PROG} selftest --help)", EXIT_USAGE)
    if args.command == "completion":
        from agent.completion import script

        sys.stdout.write(script(parser, args.shell))
        return 0

    from agent import commands
    from edge_sdk.errors import EdgeSdkError

    commands.quiet_logging()
    try:
        return commands.dispatch(args, parser)
    except EdgeSdkError as e:
        return _fail(f"error: {e}", e.exit_code)
    except Exception as e:
        if os.environ.get("EDGE_SDK_DEBUG"):
            raise
        return _fail(
            f"internal error: {type(e).__name__}: {e} (set EDGE_SDK_DEBUG=1 for a traceback "
            "and please report it)",
            EXIT_BUG,
        )


def _fail(message: str, code: int) -> int:
    # Foreign messages can carry newlines; an error stays one line on stderr.
    sys.stderr.write(one_line(message, limit=1 << 16) + "\n")
    sys.stderr.flush()
    return code


def main() -> None:
    guarded_main(run)

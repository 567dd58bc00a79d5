"""What every command module shares: consoles, the --json flag, JSON output."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Console

from edge_sdk.core.interrupt import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, handled, say
from edge_sdk.core.text import one_line
from edge_sdk.errors import EdgeSdkError, UnsupportedError

# Human output goes to stderr when --json owns stdout; keep both consoles here so every
# command agrees.
stdout_console = Console()
stderr_console = Console(stderr=True)


def fit_stdout_console() -> None:
    """Piped output has no terminal width; 120 columns keeps report tables whole in logs and
    CI, unless COLUMNS says otherwise. Decided when a command runs, not when this module is
    imported: a process (a test session, an embedding program) may run many commands with
    different environments, and rich reads COLUMNS only when a console is made."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        stdout_console.width = int(columns)
    elif sys.stdout.isatty():
        try:
            stdout_console.width = os.get_terminal_size(sys.stdout.fileno()).columns
        except (OSError, ValueError):
            stdout_console.width = 80
    else:
        stdout_console.width = 120


JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def new_app(help_text: str) -> typer.Typer:
    """A Typer group configured the way every edge-sdk group must be: no locals in tracebacks
    (keys must never reach a terminal); completion is the `completion` command, not typer's
    --install-completion; help is Markdown, where a "[default: ...]" is text, not a Rich tag."""
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
        rich_markup_mode="markdown",
    )


def interrupted(code: int) -> int:
    """The one line for Ctrl-C or SIGTERM; the exit code to return."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    say(code)
    return code


def run_app(typer_app: typer.Typer, argv: Sequence[str], prog_name: str) -> int:
    """Run a Typer app on ``argv`` and return the exit code instead of exiting.

    Errors we raise on purpose become one line on stderr. Anything else is a bug: it also gets
    one line, and the traceback only with EDGE_SDK_DEBUG=1. Ctrl-C at any moment is one line
    and exit 130; SIGTERM unwinds (temporary folders removed) and exits 143.
    """
    try:
        with handled():
            return _run_app(typer_app, argv, prog_name)
    except (KeyboardInterrupt, _CtrlCInCommand):
        return interrupted(EXIT_INTERRUPTED)
    except Terminated:
        return interrupted(EXIT_TERMINATED)


def _run_app(typer_app: typer.Typer, argv: Sequence[str], prog_name: str) -> int:
    # onnxruntime's tools log chatty warnings to the root logger (per-channel axes, pre-processing
    # hints); what matters reaches the user through the report. EDGE_SDK_LOG=INFO shows them.
    level = os.environ.get("EDGE_SDK_LOG", "ERROR").upper()
    logging.basicConfig(
        level=level if level in logging.getLevelNamesMapping() else "ERROR", force=True
    )
    from edge_sdk.cli._conventions import apply, prepare_completion

    fit_stdout_console()
    command = typer.main.get_command(typer_app)
    apply(command)
    _carry_ctrl_c(command)
    prepare_completion(prog_name)
    try:
        result = command.main(list(argv), prog_name=prog_name, standalone_mode=False)
    except EdgeSdkError as e:
        _one_line(f"error: {e}")
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        # Click turns Ctrl-C inside a command (and a declined confirmation) into Abort.
        _one_line("aborted")
        return EXIT_INTERRUPTED
    except typer.TyperException as e:
        # Usage errors: one line too, with where to look instead of the whole usage block. A
        # bare group (`edge-sdk fleet`) has printed its help already: no empty error after it.
        message = e.format_message().strip()
        context = getattr(e, "ctx", None)
        where = getattr(context, "command_path", None) or prog_name
        if message:
            _one_line(f"error: {message} (see {where} --help)")
        return e.exit_code
    except Exception as e:
        missing = _missing_extra(e, prog_name)
        if missing is not None:
            _one_line(missing)
            return UnsupportedError.exit_code
        if os.environ.get("EDGE_SDK_DEBUG"):
            raise
        _one_line(
            f"internal error: {type(e).__name__}: {e} (set EDGE_SDK_DEBUG=1 for a traceback "
            "and please report it)"
        )
        return 70
    return result if isinstance(result, int) else 0


class _CtrlCInCommand(BaseException):
    """Ctrl-C inside a command, carried past Typer: Typer (0.29) turns a KeyboardInterrupt in a
    command into a silent ``Exit(130)``, so the user would get no ``interrupted`` line."""


def _carry_ctrl_c(command: Any) -> None:
    """Wrap every command's callback so its Ctrl-C reaches ``run_app`` as ``_CtrlCInCommand``."""
    callback = command.callback
    if callback is not None:

        @functools.wraps(callback)
        def carried(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            except KeyboardInterrupt as e:
                raise _CtrlCInCommand from e

        command.callback = carried
    for sub in getattr(command, "commands", {}).values():
        _carry_ctrl_c(sub)


def _missing_extra(error: Exception, prog_name: str) -> str | None:
    # An optional dependency that is not installed is the user's setup, not our bug: name the
    # extra that installs it (exit 3, as any valid request this installation cannot do).
    if not isinstance(error, ImportError):
        return None
    from edge_sdk.core.extras import missing_extra_line

    return missing_extra_line(error, prog_name)


def _one_line(message: str) -> None:
    # Foreign messages can carry newlines; an error must stay one line on stderr.
    sys.stderr.write(one_line(message, limit=1 << 16) + "\n")
    sys.stderr.flush()

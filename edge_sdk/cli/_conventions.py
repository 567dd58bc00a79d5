"""What users know from gh and kubectl, applied to the whole ``edge-sdk`` command tree in one
place, so a command added later follows it without a line of its own:

- ``--version``, ``version [--json]`` and ``completion bash|zsh|fish``;
- ``--log-level`` before or after the command (``EDGE_SDK_LOG`` is its environment variable);
- placeholders in help (``PATH``, ``VERSION``, ``DEVICE_ID``), not Python types;
- one spelling per meaning (``--trust-root``, ``--client-key``, ``--client-cert``), the old
  ones kept as hidden aliases that print one deprecation line.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from edge_sdk.cli._common import JsonFlag, emit_json, stderr_console
from edge_sdk.core.extras import version_line

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SHELLS = ("bash", "zsh", "fish")

# canonical spelling -> the old spellings still accepted (hidden in help, one warning line)
DEPRECATED_ALIASES = {
    "--trust-root": ("--trust",),
    "--client-key": ("--key",),
    "--client-cert": ("--cert",),
}

# Option names whose value deserves a placeholder more telling than the option's own name.
_PLACEHOLDERS = {
    "broker": "URL",
    "store": "URL",
    "store_url": "URL",
    "store_endpoint": "URL",
    "device": "DEVICE_ID",
    "input_shape": "NAME=DIMS",
    "listen": "ADDR:PORT",
    "operator_listen": "ADDR:PORT",
    "hostname": "HOST",
    "log_level": "LEVEL",
}
_DIRECTORIES = frozenset({"out", "repo", "keys", "directory"})
_ALIAS_META = "edge_sdk.deprecated_aliases"


def complete_var(prog: str) -> str:
    """The environment variable the completion scripts set to ask for candidates."""
    return f"_{prog}_COMPLETE".replace("-", "_").upper()


def _print_version(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        sys.stdout.write(version_line(ctx.find_root().info_name or "edge-sdk") + "\n")
        raise typer.Exit()


def _set_log_level(value: str | None) -> str | None:
    if value is None:
        return None
    if value.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"{value!r}: use one of {', '.join(LOG_LEVELS)}")
    logging.basicConfig(level=value.upper(), force=True)
    return value


def install(app: typer.Typer) -> None:
    """The root options and the ``version`` and ``completion`` commands."""

    @app.callback()
    def _root(
        version: Annotated[
            bool,
            typer.Option(
                "--version",
                callback=_print_version,
                is_eager=True,
                help="Print the version and exit.",
            ),
        ] = False,
        log_level: Annotated[
            str | None,
            typer.Option(
                "--log-level",
                envvar="EDGE_SDK_LOG",
                callback=_set_log_level,
                help="debug, info, warning, error (default) or critical: how much the "
                "libraries underneath log. It may also follow the command.",
                show_default=False,
            ),
        ] = None,
    ) -> None:
        pass

    @app.command("version")
    def _version_command(ctx: typer.Context, json_output: JsonFlag = False) -> None:
        """Print the version, the distribution and Python."""
        from edge_sdk.core.extras import version_info

        prog = ctx.find_root().info_name or "edge-sdk"
        if json_output:
            emit_json(version_info(prog))
        else:
            sys.stdout.write(version_line(prog) + "\n")

    @app.command("completion")
    def _completion_command(
        ctx: typer.Context,
        shell: Annotated[str, typer.Argument(help="bash, zsh or fish.", show_default=False)],
    ) -> None:
        """Print the shell completion script. bash: `source <(edge-sdk completion bash)` in
        ~/.bashrc; zsh: `source <(edge-sdk completion zsh)` in ~/.zshrc after compinit; fish:
        `edge-sdk completion fish > ~/.config/fish/completions/edge-sdk.fish`."""
        # typer's own --show-completion calls this; typer has no public name for it.
        from typer._completion_shared import get_completion_script

        from edge_sdk.errors import InputError

        if shell not in SHELLS:
            raise InputError(f"completion {shell!r}: the shells are {', '.join(SHELLS)}")
        prog = ctx.find_root().info_name or "edge-sdk"
        script = get_completion_script(prog_name=prog, complete_var=complete_var(prog), shell=shell)
        sys.stdout.write(script + "\n")


def prepare_completion(prog: str) -> None:
    """Register typer's completion classes when a completion script is asking for candidates
    (only then: they cost an import on every run)."""
    if os.environ.get(complete_var(prog)):
        from typer._completion_classes import completion_init

        completion_init()


def apply(command: object) -> None:
    """Apply the conventions to ``command`` and everything below it."""
    root_level = _find_log_level(command)
    _walk(command, root_level)


def _find_log_level(command: object) -> TyperOption | None:
    params = command.params if isinstance(command, TyperGroup | TyperCommand) else []
    return next((p for p in params if isinstance(p, TyperOption) and "--log-level" in p.opts), None)


def _walk(command: object, log_level: TyperOption | None) -> None:
    if isinstance(command, TyperGroup | TyperCommand):
        _placeholders(command.params)
        command.get_help_option = _flag_help(command.get_help_option)  # type: ignore[method-assign,assignment]
    if isinstance(command, TyperGroup):
        for child in command.commands.values():
            _walk(child, log_level)
    elif isinstance(command, TyperCommand):
        _add_aliases(command)
        if log_level is not None and not any(
            "--log-level" in getattr(p, "opts", ()) for p in command.params
        ):
            # Accepted after the command too, as kubectl's global flags are; shown once, at
            # the root.
            command.params.append(_hidden_copy(log_level, "--log-level", "_log_level_here"))


def _flag_help(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    # --help is made on first use, outside ``params``: it gets its empty placeholder then.
    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if isinstance(option, TyperOption) and option.metavar is None:
            option.metavar = ""
        return option

    return get_help_option


def _placeholders(params: list[Any]) -> None:
    for param in params:
        if isinstance(param, TyperArgument) and param.metavar is None:
            param.metavar = (param.name or "").upper()
            # The name is the placeholder; a "<path>" beside it is noise.
            param.display_type_rich = _no_type  # type: ignore[method-assign]
        elif isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = _option_placeholder(param)


def _no_type(ctx: Any) -> None:
    return None


def _option_placeholder(param: TyperOption) -> str:
    if param.is_flag:
        return ""
    name = param.name or ""
    if name in _PLACEHOLDERS:
        return _PLACEHOLDERS[name]
    descriptor = param.type_descriptor
    if descriptor.is_choice and descriptor.choices:
        return "|".join(str(getattr(c, "value", c)) for c in descriptor.choices)
    # A repeatable path option (list[Path]) is a path too.
    if descriptor.is_path or (descriptor.is_list and Path in get_args(descriptor.annotation)):
        return "DIR" if name in _DIRECTORIES or name.endswith("_dir") else "PATH"
    return name.upper()


def _hidden_copy(param: TyperOption, opt: str, name: str) -> TyperOption:
    """``param`` under another spelling: same type, hidden, no value of its own, no env var."""
    twin = copy.copy(param)
    twin.opts, twin.secondary_opts, twin.name = [opt], [], name
    twin.hidden, twin.expose_value, twin.required = True, False, False
    twin.envvar, twin.default, twin.is_eager = None, None, False
    return twin


def _add_aliases(command: TyperCommand) -> None:
    taken = {opt for p in command.params for opt in getattr(p, "opts", ())}
    aliases: list[TyperOption] = []
    for param in command.params:
        if not isinstance(param, TyperOption):
            continue
        for canonical in param.opts:
            for old in DEPRECATED_ALIASES.get(canonical, ()):
                if old in taken:  # `build --key` is the signing key: not an alias there
                    continue
                twin = _hidden_copy(param, old, f"_alias_{param.name}_{len(aliases)}")
                twin.callback = _alias_given(param.name or "", old, canonical)
                aliases.append(twin)
                param.callback = _prefer_alias(param.callback)
    command.params.extend(aliases)


def _alias_given(target: str, old: str, canonical: str) -> Callable[..., Any]:
    def callback(ctx: typer.Context, _param: Any, value: Any) -> Any:
        if value is None or ctx.resilient_parsing:
            return value
        stderr_console.print(
            f"warning: {old} is deprecated; use {canonical}", markup=False, highlight=False
        )
        # Processed before the canonical option (the command line's order): the default map
        # satisfies it when required, the meta entry wins over its environment variable.
        ctx.default_map = {**(ctx.default_map or {}), target: value}
        ctx.meta.setdefault(_ALIAS_META, {})[target] = value
        return value

    return callback


def _prefer_alias(original: Callable[..., Any] | None) -> Callable[..., Any]:
    def callback(ctx: typer.Context, param: Any, value: Any) -> Any:
        given = ctx.meta.get(_ALIAS_META, {})
        source = ctx.get_parameter_source(param.name)
        if param.name in given and getattr(source, "name", "") != "COMMANDLINE":
            value = given[param.name]
        return original(ctx, param, value) if original is not None else value

    return callback

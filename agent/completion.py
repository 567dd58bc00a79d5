"""``edge-agent completion bash|zsh|fish``: a completion script generated from the argparse
parser, so it cannot drift from the real options.

bash gets a function that completes commands, each command's options and the values of options
with fixed choices; everything else (``--config PATH``, a bundle) falls back to file names
(``complete -o default``). zsh loads the same function through its bashcompinit, as most
argparse tools do; fish gets native ``complete`` lines with the help texts.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    takes_value: bool
    choices: tuple[str, ...]
    help: str


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    options: list[Option] = field(default_factory=list)
    choices: tuple[str, ...] = ()  # a positional argument's fixed values


def _options(parser: argparse.ArgumentParser) -> tuple[list[Option], tuple[str, ...]]:
    options: list[Option] = []
    positional: tuple[str, ...] = ()
    for action in parser._actions:  # argparse keeps no public list of its actions
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        choices = tuple(str(c) for c in action.choices or ())
        if not action.option_strings:
            positional = choices
            continue
        options.append(
            Option(tuple(action.option_strings), action.nargs != 0, choices, action.help or "")
        )
    return options, positional


def _model(parser: argparse.ArgumentParser) -> tuple[list[Option], list[Command]]:
    top, _ = _options(parser)
    commands = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {c.dest: c.help or "" for c in action._choices_actions}
            for name, sub in action.choices.items():
                options, choices = _options(sub)
                commands.append(Command(name, helps.get(name, ""), options, choices))
    return top, commands


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    top, commands = _model(parser)
    if shell == "fish":
        return _fish(parser.prog, top, commands)
    bash = _bash(parser.prog, top, commands)
    if shell == "zsh":
        return f"#compdef {parser.prog}\nautoload -U +X bashcompinit && bashcompinit\n{bash}"
    return bash


def _words(options: list[Option], extra: tuple[str, ...] = ()) -> str:
    return shlex.quote(" ".join([*extra, *(f for o in options for f in o.flags)]))


def _bash(prog: str, top: list[Option], commands: list[Command]) -> str:
    function = "_" + prog.replace("-", "_")
    value_cases = [
        f'        "{c.name} {flag}") words={_words([], o.choices)} ;;'
        for c in commands
        for o in c.options
        if o.choices
        for flag in o.flags
    ]
    command_cases = [
        f"        {c.name}) words={_words(c.options)}; choices={_words([], c.choices)} ;;"
        for c in commands
    ]
    names = tuple(c.name for c in commands)
    return "\n".join(
        [
            f'# {prog} completion for bash: eval "$({prog} completion bash)"',
            f"{function}() {{",
            '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
            "    local words='' choices=''",
            '    if [ "$COMP_CWORD" -eq 1 ]; then',
            f'        COMPREPLY=($(compgen -W {_words(top, names)} -- "$cur")); return',
            "    fi",
            '    case "${COMP_WORDS[1]} $prev" in',
            *value_cases,
            "    esac",
            '    if [ -n "$words" ]; then',
            '        COMPREPLY=($(compgen -W "$words" -- "$cur")); return',
            "    fi",
            '    case "${COMP_WORDS[1]}" in',
            *command_cases,
            "    esac",
            '    case "$cur" in',
            '        -*) COMPREPLY=($(compgen -W "$words" -- "$cur")) ;;',
            '        *) COMPREPLY=($(compgen -W "$choices" -- "$cur")) ;;',
            "    esac",
            "}",
            f"complete -o default -F {function} {prog}",
            "",
        ]
    )


def _fish(prog: str, top: list[Option], commands: list[Command]) -> str:
    lines = [f"# {prog} completion for fish: {prog} completion fish | source"]
    for c in commands:
        lines.append(f"complete -c {prog} -n __fish_use_subcommand -f -a {c.name} -d {_q(c.help)}")
    lines += _fish_options(prog, "__fish_use_subcommand", top)
    for c in commands:
        condition = shlex.quote(f"__fish_seen_subcommand_from {c.name}")
        if c.choices:
            lines.append(f"complete -c {prog} -n {condition} -x -a {_q(' '.join(c.choices))}")
        lines += _fish_options(prog, condition, c.options)
    return "\n".join(lines) + "\n"


def _fish_options(prog: str, condition: str, options: list[Option]) -> list[str]:
    lines = []
    for o in options:
        flags = " ".join(f"-l {f[2:]}" if f.startswith("--") else f"-s {f[1:]}" for f in o.flags)
        values = f" -x -a {_q(' '.join(o.choices))}" if o.choices else " -r" * o.takes_value
        lines.append(f"complete -c {prog} -n {condition} {flags}{values} -d {_q(o.help)}")
    return lines


def _q(text: str) -> str:
    # fish's single quotes take \' and \\ as escapes (shlex.quote's '"'"' is POSIX-only).
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

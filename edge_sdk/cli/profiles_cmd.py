"""``edge-sdk profiles list|show``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from edge_sdk.cli._common import JsonFlag, emit_json, new_app, stdout_console
from edge_sdk.core.profiles import list_profiles, resolve_profile

profiles_app = new_app("Hardware profiles: what each target wants.")


@profiles_app.command("list")
def list_command(json_output: JsonFlag = False) -> None:
    """List every profile on the search path (EDGE_SDK_PROFILE_PATH, user dir, built-in)."""
    profiles = list_profiles()
    if json_output:
        emit_json([p.to_json() for p in profiles])
        return
    table = Table(title="hardware profiles")
    for column in ("id", "runtime", "precisions", "selection", "description"):
        table.add_column(column, overflow="fold")
    for p in profiles:
        table.add_row(p.id, p.runtime, " > ".join(p.precisions), p.selection, p.description)
    stdout_console.print(table)


@profiles_app.command("show")
def show_command(
    profile: Annotated[str, typer.Argument(help="Profile id or path to a .toml file.")],
    json_output: JsonFlag = False,
) -> None:
    """Show one profile in full."""
    p = resolve_profile(profile)
    if json_output:
        emit_json(p.to_json())
        return
    table = Table(show_header=False, title=p.id)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in p.to_json().items():
        table.add_row(key, str(value))
    stdout_console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(profiles_app, name="profiles")

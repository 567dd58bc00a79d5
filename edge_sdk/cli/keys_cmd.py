"""``edge-sdk keys init|rotate|rotate-root|show``: the signing keyring.

Only public data is ever printed: key ids, paths, roles, thresholds and expiry.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from edge_sdk.cli._common import JsonFlag, emit_json, new_app, stdout_console

if TYPE_CHECKING:
    from edge_sdk.signing.keys import KeyringInfo

keys_app = new_app("Signing keys: an offline root key and online keys that sign bundles.")

DirArg = Annotated[Path, typer.Argument(help="Keyring directory.", show_default=False)]
ExpiresDays = Annotated[
    int, typer.Option("--expires-days", help="Days until the new root.json expires.")
]
RootKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--root-key", help="Offline root key, if it is not DIR/root.key.", show_default=False
    ),
]


def _short(keyid: str) -> str:
    # Enough to tell keys apart on a terminal; --json has the full ids.
    return keyid[:16]


def _print(info: KeyringInfo, title: str) -> None:
    out = stdout_console
    out.print(title, markup=False, highlight=False)
    out.print(
        f"root.json v{info.root_version}, expires {info.expires:%Y-%m-%d %H:%M} UTC: "
        f"{info.root_json}",
        markup=False,
        highlight=False,
    )
    roles = Table(title="roles")
    for column in ("role", "threshold", "key ids"):
        roles.add_column(column, overflow="fold")
    for role in info.roles:
        ids = ", ".join(_short(k) for k in role.keyids)
        roles.add_row(role.name, f"{role.threshold} of {len(role.keyids)}", ids)
    out.print(roles)
    if info.keys:
        files = Table(title="key files")
        for column in ("file", "key id", "trusted for"):
            files.add_column(column, overflow="fold")
        for key in info.keys:
            name = key.path.name if key.present else f"{key.path.name} (offline)"
            files.add_row(name, _short(key.keyid), ", ".join(key.roles) or "not in this root")
        out.print(files)
    if info.created:
        out.print("wrote " + ", ".join(p.name for p in info.created), markup=False, highlight=False)


def _report(info: KeyringInfo, title: str, json_output: bool) -> None:
    if json_output:
        emit_json(info.to_json())
    else:
        _print(info, title)


@keys_app.command("init")
def init_command(
    directory: DirArg,
    online: Annotated[int, typer.Option("--online", help="Number of online signing keys.")] = 1,
    threshold: Annotated[
        int, typer.Option("--threshold", help="Online signatures each bundle needs.")
    ] = 1,
    expires_days: ExpiresDays = 365,
    json_output: JsonFlag = False,
) -> None:
    """Create a keyring: root.key (offline), online-N.key, and root.json for devices to pin.

    Move root.key off this machine afterwards; it is only needed to rotate keys.
    """
    from edge_sdk.signing.keys import init_keys

    info = init_keys(directory, online_keys=online, threshold=threshold, expires_days=expires_days)
    _report(info, f"created keyring {directory}; move root.key offline now", json_output)


@keys_app.command("rotate")
def rotate_command(
    directory: DirArg,
    revoke: Annotated[
        Path | None,
        typer.Option("--revoke", help="Online key (.key or .pub) to revoke.", show_default=False),
    ] = None,
    root_key: RootKeyOpt = None,
    expires_days: ExpiresDays = 365,
    json_output: JsonFlag = False,
) -> None:
    """Add a new online key (optionally revoking one) in a new root.json signed by root.key."""
    from edge_sdk.signing.keys import rotate_online_key

    info = rotate_online_key(directory, revoke=revoke, expires_days=expires_days, root_key=root_key)
    _report(info, f"rotated online keys; publish root.json v{info.root_version}", json_output)


@keys_app.command("rotate-root")
def rotate_root_command(
    directory: DirArg,
    root_key: RootKeyOpt = None,
    expires_days: ExpiresDays = 365,
    json_output: JsonFlag = False,
) -> None:
    """Replace the offline root key; the new root.json is signed by the old and new keys."""
    from edge_sdk.signing.keys import rotate_root_key

    info = rotate_root_key(directory, expires_days=expires_days, root_key=root_key)
    _report(info, f"rotated the root key; publish root.json v{info.root_version}", json_output)


@keys_app.command("show")
def show_command(
    path: Annotated[
        Path, typer.Argument(help="Keyring directory or a root.json.", show_default=False)
    ],
    json_output: JsonFlag = False,
) -> None:
    """Show roles, key ids, thresholds and expiry of a keyring or root.json."""
    from edge_sdk.signing.keys import describe_keyring

    info = describe_keyring(path)
    _report(info, f"keyring {info.directory}", json_output)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")

"""``edge-sdk fleet publish|assign``: put bundles on the fleet's broker and say which version
devices should run. Broker and keyring settings come from options or ``EDGE_SDK_*`` variables
so a shell session can set them once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edge_sdk.cli._common import JsonFlag, emit_json, new_app, stderr_console, stdout_console
from edge_sdk.cli._fleet_options import (
    BrokerOpt,
    CaOpt,
    CertOpt,
    FleetOpt,
    KeyOpt,
    KeysOpt,
    PrefixOpt,
    RepoOpt,
    connect,
)

if TYPE_CHECKING:
    from edge_sdk.operator_link import OperatorLink

fleet_app = new_app("Operate the fleet: publish bundles and assign versions over MQTT.")


def _connect(broker: str, ca: Path | None, cert: Path | None, key: Path | None) -> OperatorLink:
    return connect(broker, ca, cert, key, "edge-sdk-operator")


@fleet_app.command("publish")
def publish_command(
    bundle: Annotated[Path, typer.Argument(help="Signed bundle file.", show_default=False)],
    repo: RepoOpt = Path("fleet-repo"),
    keys: KeysOpt = Path("keys"),
    broker: BrokerOpt = "mqtt://127.0.0.1:1883",
    ca: CaOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    fleet: FleetOpt = "default",
    topic_prefix: PrefixOpt = "edge",
    json_output: JsonFlag = False,
) -> None:
    """Add a bundle to the fleet repository and publish its chunks and metadata (retained).
    Repeating it is safe: nothing changes, and what the broker lost is sent again."""
    from edge_sdk.bundle import read_bundle
    from edge_sdk.fleet import open_or_create, publish_bundle
    from edge_sdk.topics import Topics

    topics = Topics(topic_prefix, fleet)
    parsed = read_bundle(bundle)
    repository = open_or_create(repo, keys)

    def progress(done: int, total: int) -> None:
        if not json_output and (done == total or done % 50 == 0):
            stderr_console.print(f"  chunks acknowledged: {done}/{total}", highlight=False)

    with _connect(broker, ca, cert, key) as link:
        result = publish_bundle(parsed, repository, link, topics, progress=progress)
    summary = {
        "name": result.name,
        "version": result.version,
        "chunks": result.chunks,
        "chunk_bytes": result.chunk_bytes,
        "metadata_files": result.metadata_files,
        "repo": str(repo),
        "topic": topics.root,
    }
    if json_output:
        emit_json(summary)
    else:
        stdout_console.print(
            f"published {result.name} v{result.version}: {result.chunks} chunks "
            f"({result.chunk_bytes} bytes) and {result.metadata_files} metadata files under "
            f"{topics.root}/repo",
            highlight=False,
        )


@fleet_app.command("assign")
def assign_command(
    model: Annotated[str, typer.Argument(help="Model name.", show_default=False)],
    version: Annotated[
        str,
        typer.Argument(help="Version to run: as given to build --version.", show_default=False),
    ],
    device: Annotated[
        str | None, typer.Option("--device", help="One device id.", show_default=False)
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="A device group.", show_default=False)
    ] = None,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Allow going below versions devices committed.")
    ] = False,
    repo: RepoOpt = Path("fleet-repo"),
    keys: KeysOpt = Path("keys"),
    broker: BrokerOpt = "mqtt://127.0.0.1:1883",
    ca: CaOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    fleet: FleetOpt = "default",
    topic_prefix: PrefixOpt = "edge",
    json_output: JsonFlag = False,
) -> None:
    """Sign and publish the version a device or group should run (retained desired state)."""
    from edge_sdk.bundle import check_name, parse_version
    from edge_sdk.errors import InputError
    from edge_sdk.fleet import assign
    from edge_sdk.topics import Topics, check_identifier

    if (device is None) == (group is None):
        raise InputError("pass exactly one of --device ID or --group NAME")
    # Everything checkable is checked before connecting to anything.
    check_name(model)
    number, label = parse_version(version)
    if device is not None:
        check_identifier(device, "--device")
    else:
        check_identifier(str(group), "--group")
    scope = f"devices/{device}" if device is not None else f"groups/{group}"
    topics = Topics(topic_prefix, fleet)
    with _connect(broker, ca, cert, key) as link:
        a = assign(
            keys, repo, link, topics, model=model, version=number, scope=scope, rollback=rollback
        )
    if json_output:
        emit_json(a.to_json())
    else:
        verb = "rolled back" if rollback else "assigned"
        stdout_console.print(f"{verb} {model} v{label} to {scope} (serial {a.serial})")


def register(app: typer.Typer) -> None:
    app.add_typer(fleet_app, name="fleet")

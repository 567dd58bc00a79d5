"""``edge-sdk fleet enroll DEVICE_ID``: a device's client certificate and ``agent.toml``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_sdk.cli._common import JsonFlag, emit_json, stdout_console
from edge_sdk.cli._fleet_options import BrokerDirOpt


def enroll_command(
    device_id: Annotated[
        str, typer.Argument(help="Device id: the certificate CN and MQTT username.")
    ],
    profile: Annotated[
        str,
        typer.Option("--profile", help="The device's hardware profile (id or .toml path)."),
    ],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="A model the device runs (repeatable).", show_default=False),
    ] = None,
    group: Annotated[str, typer.Option("--group", help="The device's group.")] = "default",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for the device's files [default: ./DEVICE_ID]."),
    ] = None,
    trust_root: Annotated[
        Path, typer.Option("--trust-root", help="The fleet's TUF root.json (copied beside).")
    ] = Path("keys/root.json"),
    broker_dir: BrokerDirOpt = Path("broker"),
    state_dir: Annotated[
        str, typer.Option("--state-dir", help="The agent's state directory on the device.")
    ] = "/var/lib/edge-agent",
    force: Annotated[
        bool, typer.Option("--force", help="Re-enrol: issue an existing id a new certificate.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Issue DEVICE_ID's client certificate and write its agent.toml, ready to copy over."""
    from edge_sdk.broker.enroll import EnrollRequest, enroll

    result = enroll(
        EnrollRequest(
            device_id=device_id,
            profile=profile,
            models=tuple(model or ()),
            out=out if out is not None else Path(device_id),
            broker_dir=broker_dir,
            trust_root=trust_root,
            group=group,
            state_dir=state_dir,
            force=force,
        )
    )
    if json_output:
        emit_json(result.to_json())
        return
    directory = result.config.parent
    stdout_console.print(
        f"enrolled {result.device_id} (group {result.group}, {result.profile}) for "
        f"{result.url}: certificate serial {result.serial}, sha256 {result.sha256}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    stdout_console.print(
        f"copy {directory}/ to the device and run: edge-agent run --config "
        f"<that directory>/agent.toml ({result.key.name} is its private key: copy, don't share)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def revoke_command(
    device_id: Annotated[str, typer.Argument(help="The enrolled device to cut off.")],
    broker_dir: BrokerDirOpt = Path("broker"),
    json_output: JsonFlag = False,
) -> None:
    """Revoke DEVICE_ID's certificate: it is added to the broker's CRL, which Mosquitto reads
    at start, so restart the broker to apply it. `fleet enroll --force` issues a new one."""
    from edge_sdk.broker.revoke import revoke

    result = revoke(broker_dir, device_id)
    if json_output:
        emit_json(result.to_json())
        return
    if result.already:
        stdout_console.print(
            f"{result.device_id}'s certificate (serial {result.serial}) was already revoked "
            f"at {result.revoked_at}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    stdout_console.print(
        f"revoked {result.device_id} (certificate serial {result.serial}); {result.crl} now "
        f"lists {result.revoked_total}. Restart the broker to apply it: Mosquitto reads the "
        "CRL at start, and the device is refused at its next connection",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )

"""``edge-sdk fleet status``: every device's retained status and presence, read once from the
broker (``edge_sdk.fleet.inventory.FleetWatch``), plus devices enrolled but never heard from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_sdk.cli._common import JsonFlag, emit_json, stdout_console
from edge_sdk.cli._fleet_options import (
    BROKER_OPTIONS,
    BrokerDirOpt,
    BrokerOptions,
    with_broker_options,
)

_Opt = typer.Option


@with_broker_options
def status_command(
    group: Annotated[
        str | None, _Opt("--group", help="Only this group.", show_default=False)
    ] = None,
    model: Annotated[
        str | None, _Opt("--model", help="Only this model.", show_default=False)
    ] = None,
    state: Annotated[
        str | None,
        _Opt("--state", help="Only models in this update state (e.g. failed).", show_default=False),
    ] = None,
    online: Annotated[
        bool | None,
        _Opt(
            "--online/--offline",
            help="Only devices online, or only those not known to be online (offline, no "
            "presence yet, never seen).",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        str | None, _Opt("--device", help="Only this device.", show_default=False)
    ] = None,
    connection: BrokerOptions = BROKER_OPTIONS,
    broker_dir: BrokerDirOpt = Path("broker"),
    json_output: JsonFlag = False,
) -> None:
    """Show every device: its models, versions, update states, serving health, presence and
    how long ago it last reported. Devices enrolled (BROKER_DIR/devices/) but never heard from
    are listed as "never seen"."""
    from datetime import UTC, datetime

    from edge_sdk.fleet import status as fleet_status

    # Everything checkable is checked before connecting.
    filters = fleet_status.Filters(group, model, state, online, device).check()
    topics = connection.topics()
    session = connection.watch(topics, "status")
    enrolled = fleet_status.load_enrolled(broker_dir, connection.fleet)
    with session:
        session.sync()
        devices = session.devices()
    rows = fleet_status.select(fleet_status.merge(devices, enrolled), filters)
    if json_output:
        emit_json(fleet_status.to_json(rows))
        return
    summary = fleet_status.summarize(rows)
    if rows:
        stdout_console.print(fleet_status.table(rows, datetime.now(UTC)))
    for line in fleet_status.notes(rows):
        stdout_console.print(f"  {line}", highlight=False, markup=False)
    # One line even past the console width: scripts grep it, logs keep it whole.
    stdout_console.print(fleet_status.summary_line(summary), highlight=False, soft_wrap=True)

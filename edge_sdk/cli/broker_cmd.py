"""``edge-sdk broker init DIR``: a Mosquitto 2 configuration, fleet CA and ACL in one directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_sdk.cli._common import JsonFlag, emit_json, new_app, stderr_console, stdout_console
from edge_sdk.cli._fleet_options import FleetOpt, KeysOpt, PrefixOpt, RepoOpt

broker_app = new_app("Set up the fleet's MQTT broker (Mosquitto 2, mutual TLS).")


@broker_app.callback()
def _group() -> None:
    # A group with a single command would otherwise collapse into it: `broker init` must stay
    # `broker init` when more commands join it.
    """Set up the fleet's MQTT broker (Mosquitto 2, mutual TLS)."""


@broker_app.command("init")
def init_command(
    directory: Annotated[
        Path, typer.Argument(help="Directory for the broker's files.", show_default=False)
    ],
    listen: Annotated[
        str, typer.Option("--listen", help="ADDR:PORT the broker listens on.")
    ] = "0.0.0.0:8883",
    operator_listen: Annotated[
        str | None,
        typer.Option(
            "--operator-listen",
            help="ADDR:PORT of the operator's own listener (only the operator CA's certificate "
            "gets in). Default: the --listen address, port + 1.",
            show_default=False,
        ),
    ] = None,
    hostname: Annotated[
        list[str] | None,
        typer.Option(
            "--hostname",
            help="Name or IP devices dial (repeatable; the first goes into agent.toml). "
            "Default: localhost and 127.0.0.1.",
            show_default=False,
        ),
    ] = None,
    fleet: FleetOpt = "default",
    topic_prefix: PrefixOpt = "edge",
    repo: RepoOpt = Path("fleet-repo"),
    keys: KeysOpt = Path("keys"),
    run_as: Annotated[
        str, typer.Option("--run-as", help="User Mosquitto switches to when started as root.")
    ] = "mosquitto",
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing fleet CA (re-enrol every device).")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Write mosquitto.conf, acl, the fleet CA, the server and operator certificates."""
    from edge_sdk.broker.config_text import export_line
    from edge_sdk.broker.settings import DEFAULT_HOSTNAMES, make_settings
    from edge_sdk.broker.setup import init_broker

    settings = make_settings(
        directory,
        listen=listen,
        hostnames=tuple(hostname) if hostname else DEFAULT_HOSTNAMES,
        fleet=fleet,
        topic_prefix=topic_prefix,
        run_as=run_as,
        operator_listen=operator_listen,
        repo=repo,
        keys=keys,
    )
    result = init_broker(settings, force=force)
    for note in result.notes:
        stderr_console.print(note, markup=False, highlight=False, soft_wrap=True)
    if json_output:
        emit_json(result.to_json())
        return
    say = stdout_console.print
    d = settings.directory
    say(
        f"wrote a Mosquitto config for {settings.topics.root} in {d} "
        f"(listener {settings.listen}, devices dial {settings.url}; the operator's listener "
        f"{settings.operator_listen})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if result.chowned_to:
        say(
            f"the broker's key, certificates, acl, data/ and log belong to {result.chowned_to}; "
            "ca.key, operator-ca.key and operator.key stay yours",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    say(f"keep {d / 'ca.key'} safe: it enrols devices", markup=False, highlight=False)
    say(f"start it:  {result.start_command}", markup=False, highlight=False, soft_wrap=True)
    say(f"operator:  {export_line(settings)}", markup=False, highlight=False, soft_wrap=True)
    say(
        "enrol a device:  edge-sdk fleet enroll DEVICE_ID --profile PROFILE --model NAME "
        f"--broker-dir {d}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(broker_app, name="broker")

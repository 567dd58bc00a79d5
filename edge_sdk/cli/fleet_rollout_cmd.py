"""``edge-sdk fleet rollout|rollback``: canary waves gated on the devices' own reports, and the
way back. The decisions are ``edge_sdk.fleet.rollout``'s; the record and the loop are
``edge_sdk.fleet.rollout_run``'s; this module parses options and prints."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from edge_sdk.cli._common import JsonFlag, emit_json, stderr_console, stdout_console
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
    session_id,
    watch,
)
from edge_sdk.cli.fleet_cmd import fleet_app

EXIT_HALTED = 10  # a halted rollout is not an error of input, but a pipeline must see it


@fleet_app.command("rollout")
def rollout_command(
    model: Annotated[str, typer.Argument(help="Model name.", show_default=False)],
    version: Annotated[
        str | None,
        typer.Argument(help="Version, as given to build --version.", show_default=False),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option("--group", help="Only this group's devices (default: every group)."),
    ] = None,
    waves: Annotated[
        str,
        typer.Option("--waves", help="Cumulative wave sizes: device counts or percentages."),
    ] = "1,10%,50%,100%",
    max_failure_rate: Annotated[
        float,
        typer.Option("--max-failure-rate", help="Failed share of a wave that halts the rollout."),
    ] = 0.0,
    probation: Annotated[
        float,
        typer.Option(
            "--probation",
            help="Seconds to watch each settled wave's health before the next wave.",
        ),
    ] = 60.0,
    wave_timeout: Annotated[
        float,
        typer.Option("--wave-timeout", help="Seconds an online device may take to report."),
    ] = 600.0,
    max_latency_ratio: Annotated[
        float,
        typer.Option("--max-latency-ratio", help="New p95 over the incumbent's that fails."),
    ] = 1.5,
    max_error_rate_increase: Annotated[
        float,
        typer.Option("--max-error-rate-increase", help="Error-rate rise over the incumbent."),
    ] = 0.01,
    min_requests: Annotated[
        int, typer.Option("--min-requests", help="Fewer requests than this are not judged.")
    ] = 20,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the rollout of MODEL recorded in --repo.")
    ] = False,
    heartbeat: Annotated[
        float,
        typer.Option(
            "--heartbeat",
            help="Seconds between progress lines while a wave is waited on (when stderr is "
            "not a terminal; 0: none).",
        ),
    ] = 10.0,
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
    """Roll MODEL VERSION out wave by wave, to every device whose profile the release has a
    variant for (each wave takes its share of each profile's devices; the others are listed as
    skipped). A wave passes when its devices report the version
    committed and, after --probation seconds, no worse than the version it replaced; failures
    above --max-failure-rate halt the rollout and roll the reached devices back. Offline
    devices are counted, not waited on. Exit 10 when the rollout halts."""
    from edge_sdk.core.bundle import check_name, parse_version
    from edge_sdk.core.topics import Topics, check_identifier
    from edge_sdk.errors import InputError
    from edge_sdk.fleet.publish import publish_assignments
    from edge_sdk.fleet.rollout import ACTIVE, Gate, Order, parse_waves, plan, summary
    from edge_sdk.fleet.rollout_run import begin, check_none_active, drive, driving, load
    from edge_sdk.signing.repository import Repository

    # Everything checkable is checked before connecting to anything.
    check_name(model)
    if group is not None:
        check_identifier(group, "--group")
    steps = parse_waves(waves)
    if not heartbeat >= 0 or heartbeat == float("inf"):
        raise InputError(f"--heartbeat {heartbeat:g} must be a number of seconds >= 0 (0: none)")
    gate = Gate(
        max_failure_rate=max_failure_rate,
        bake_s=probation,
        wave_timeout_s=wave_timeout,
        max_latency_ratio=max_latency_ratio,
        max_error_rate_increase=max_error_rate_increase,
        min_requests=min_requests,
    )
    topics = Topics(topic_prefix, fleet)
    say = _say
    if resume:
        record = load(repo, model)
        if record is None or record.phase not in ACTIVE:
            state = "no rollout" if record is None else f"its last rollout is {record.phase}"
            raise InputError(f"nothing to resume: {repo} holds {state} of {model}")
        if version is not None and parse_version(version)[0] != record.version:
            raise InputError(
                f"--resume: the recorded rollout is of v{record.label}, not {version}; "
                "drop VERSION to continue it"
            )
        say(f"resuming {model} v{record.label}: {record.phase}, wave {record.wave + 1}")
    else:
        if version is None:
            raise InputError("give the VERSION to roll out, or --resume a recorded rollout")
        number, label = parse_version(version)
        check_none_active(repo, model)
        variants = Repository.open(repo, keys).release_variants(model, number)
        if not variants:
            raise InputError(
                f"{model} v{label} is not in {repo}; `edge-sdk fleet publish` its bundle first"
            )
        profiles = tuple(sorted(variants))
        record = None

    with (
        driving(repo, model),
        watch(broker, ca, cert, key, topics, "rollout") as fleet_watch,
        connect(broker, ca, cert, key, session_id("operator")) as link,
    ):
        fleet_watch.sync()
        if record is None:
            planned = plan(
                model,
                number,
                label,
                profiles,
                fleet_watch.devices(),
                steps=steps,
                gate=gate,
                group=group,
            )
            for device, why in planned.skipped.items():
                say(f"  skipping {device}: {why}")
            sizes = " + ".join(str(len(w)) for w in planned.waves)
            say(
                f"rollout of {model} v{label} ({', '.join(profiles)}): "
                f"{len(planned.devices)} devices in waves {sizes}"
            )
            record = begin(repo, planned, time.time())

        def publish(todo: Sequence[Order], serial: int) -> None:
            triples = [(o.scope, o.version, o.rollback) for o in todo]
            publish_assignments(keys, link, topics, model=model, serial=serial, orders=triples)

        if stderr_console.is_terminal:
            # A live line under the log of events; logs and pipes get the events alone.
            with stderr_console.status("starting", spinner="dots") as status:
                final = drive(
                    record, repo, fleet_watch, publish, report=say, live=lambda t: status.update(t)
                )
        else:
            beat = heartbeat or float("inf")
            final = drive(record, repo, fleet_watch, publish, report=say, heartbeat_s=beat)

    result = summary(final)
    if json_output:
        emit_json(result)
    else:
        offline = f", {len(result['offline'])} offline" if result["offline"] else ""
        if final.reason:
            stdout_console.print(
                f"rollout of {model} v{final.label} halted: {final.reason}{offline}",
                highlight=False,
                markup=False,
            )
        else:
            stdout_console.print(
                f"rollout of {model} v{final.label} completed: {len(final.devices)} devices"
                f"{offline}",
                highlight=False,
            )
    if final.reason:
        raise typer.Exit(EXIT_HALTED)


@fleet_app.command("rollback")
def rollback_command(
    model: Annotated[str, typer.Argument(help="Model name.", show_default=False)],
    to: Annotated[
        str | None,
        typer.Option("--to", help="Version to go back to (default: what the rollout replaced)."),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option("--group", help="Only this group (default: every group running MODEL)."),
    ] = None,
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
    """Send MODEL's devices back to an earlier version (a signed rollback assignment per group,
    newer than any wave's), and stop any rollout of MODEL still in progress."""
    from edge_sdk.core.bundle import check_name, format_version, parse_version
    from edge_sdk.core.topics import Topics, check_identifier
    from edge_sdk.errors import InputError
    from edge_sdk.fleet.publish import next_serial, publish_assignments
    from edge_sdk.fleet.rollout_run import groups_running, halt_by_operator, load, usual_incumbent

    check_name(model)
    if group is not None:
        check_identifier(group, "--group")
    if to is not None:
        number, label = parse_version(to)
    else:
        record = load(repo, model)
        incumbent = usual_incumbent(record) if record is not None else None
        if incumbent is None:
            raise InputError(
                f"no rollout of {model} in {repo} says what came before; pass --to VERSION"
            )
        number, label = incumbent, format_version(incumbent)
    topics = Topics(topic_prefix, fleet)
    with (
        watch(broker, ca, cert, key, topics, "rollback") as fleet_watch,
        connect(broker, ca, cert, key, session_id("operator")) as link,
    ):
        fleet_watch.sync()
        groups = (group,) if group is not None else groups_running(fleet_watch.devices(), model)
        if not groups:
            raise InputError(f"no device reports running {model}; pass --group to roll back one")
        why = f"rolled back to v{label} by the operator"
        stopped = halt_by_operator(repo, model, why, time.time())
        serial = next_serial(repo)
        publish_assignments(
            keys,
            link,
            topics,
            model=model,
            serial=serial,
            orders=[(f"groups/{g}", number, True) for g in groups],
        )
    result = {
        "model": model,
        "version": number,
        "version_label": label,
        "groups": list(groups),
        "serial": serial,
        "stopped_rollout": None if stopped is None else stopped.label,
    }
    if json_output:
        emit_json(result)
    else:
        if stopped is not None:
            stdout_console.print(
                f"stopped the rollout of {model} v{stopped.label}", highlight=False
            )
        stdout_console.print(
            f"rolled {model} back to v{label} in group(s) {', '.join(groups)} (serial {serial})",
            highlight=False,
        )


def _say(line: str) -> None:
    # Live progress goes to stderr, so --json keeps stdout to itself.
    stderr_console.print(line, highlight=False, markup=False)

"""``edge-sdk fleet rollout|rollback``: canary waves gated on the devices' own reports, and the
way back. The checks, the planning and the run are ``edge_sdk.fleet.rollout_service``'s (which
``bench/bench_fleet.py`` calls too); this module parses options, connects and prints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edge_sdk.cli._common import JsonFlag, emit_json, stderr_console, stdout_console
from edge_sdk.cli._fleet_options import (
    BROKER_OPTIONS,
    BrokerOptions,
    KeysOpt,
    RepoOpt,
    with_broker_options,
)

if TYPE_CHECKING:
    from edge_sdk.core.wire.topics import Topics
    from edge_sdk.fleet.rollout_service import FleetAccess

EXIT_HALTED = 10  # a halted rollout is not an error of input, but a pipeline must see it


@with_broker_options
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
    connection: BrokerOptions = BROKER_OPTIONS,
    json_output: JsonFlag = False,
) -> None:
    """Roll MODEL VERSION out wave by wave, to every device whose profile the release has a
    variant for (each wave takes its share of each profile's devices; the others are listed as
    skipped). A wave passes when its devices report the version
    committed and, after --probation seconds, no worse than the version it replaced; failures
    above --max-failure-rate halt the rollout and roll the reached devices back. Offline
    devices are counted, not waited on. Exit 10 when the rollout halts."""
    from edge_sdk.core.bundle import check_name
    from edge_sdk.core.wire.topics import check_identifier
    from edge_sdk.errors import InputError
    from edge_sdk.fleet.rollout import Gate, parse_waves, summary
    from edge_sdk.fleet.rollout_service import RolloutRequest, check_rollout, started

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
    topics = connection.topics()
    request = RolloutRequest(model, version, steps, gate, group=group, resume=resume)
    start = check_rollout(repo, keys, request, report=_say)
    access = _access(connection, repo, keys, topics, "rollout")
    with started(access, start, report=_say) as run:
        if stderr_console.is_terminal:
            # A live line under the log of events; logs and pipes get the events alone.
            with stderr_console.status("starting", spinner="dots") as status:
                final = run.drive(report=_say, live=lambda t: status.update(t))
        else:
            final = run.drive(report=_say, heartbeat_s=heartbeat or float("inf"))

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


@with_broker_options
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
    connection: BrokerOptions = BROKER_OPTIONS,
    json_output: JsonFlag = False,
) -> None:
    """Send MODEL's devices back to an earlier version (a signed rollback assignment per group,
    newer than any wave's), and stop any rollout of MODEL still in progress."""
    from edge_sdk.fleet.rollout_service import check_rollback, roll_back

    target = check_rollback(repo, model, to, group)
    topics = connection.topics()
    done = roll_back(_access(connection, repo, keys, topics, "rollback"), target)
    result = done.to_json()
    if json_output:
        emit_json(result)
    else:
        if done.stopped is not None:
            stdout_console.print(
                f"stopped the rollout of {model} v{done.stopped.label}", highlight=False
            )
        stdout_console.print(
            f"rolled {model} back to v{target.label} in group(s) {', '.join(done.groups)} "
            f"(serial {done.serial})",
            highlight=False,
        )


def _say(line: str) -> None:
    # Live progress goes to stderr, so --json keeps stdout to itself.
    stderr_console.print(line, highlight=False, markup=False)


def _access(
    connection: BrokerOptions, repo: Path, keys: Path, topics: Topics, kind: str
) -> FleetAccess:
    """The repository, the keyring and the two sessions a rollout or a rollback holds."""
    from edge_sdk.fleet.rollout_service import FleetAccess

    return FleetAccess(
        repo,
        keys,
        topics,
        watch=lambda: connection.watch(topics, kind),
        link=lambda: connection.link("operator"),
    )

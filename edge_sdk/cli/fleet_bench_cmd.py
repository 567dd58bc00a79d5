"""``edge-sdk fleet bench BUNDLE|MODEL --device ID``: measure a bundle's artifact (or an .onnx
model in float) on one device of the fleet, with the device's own runtime (a signed benchmark
job: edge_sdk.fleet.bench)."""

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
    SecondsOpt,
    TimeoutOpt,
    session_id,
    warn_if_default_broker,
    with_broker_options,
)

if TYPE_CHECKING:
    from edge_sdk.build.device_measure import MeasureOn
    from edge_sdk.core.wire.bench_job import BenchAnswer
    from edge_sdk.core.wire.topics import Topics
    from edge_sdk.fleet.bench import JobSpec
    from edge_sdk.fleet.bench_service import DeviceBench

_Opt = typer.Option
DeviceOpt = Annotated[
    str, _Opt("--device", help="The device that measures (its id).", show_default=False)
]


@with_broker_options
def bench_command(
    target: Annotated[
        Path, typer.Argument(help="A bundle, or an .onnx model.", show_default=False)
    ],
    device: DeviceOpt,
    profile: Annotated[
        str | None,
        _Opt("--profile", help="For a model: the profile the device runs.", show_default=False),
    ] = None,
    seconds: SecondsOpt = 2.0,
    measure_timeout: TimeoutOpt = None,
    keys: KeysOpt = Path("keys"),
    repo: RepoOpt = Path("fleet-repo"),
    connection: BrokerOptions = BROKER_OPTIONS,
    json_output: JsonFlag = False,
) -> None:
    """Measure on DEVICE, without installing anything there: load time, latency p50/p95/p99,
    throughput, peak memory and fidelity against the golden vectors."""
    from edge_sdk.build.device_measure import results_json, spec_from_bundle, spec_from_model
    from edge_sdk.core.wire.topics import check_identifier
    from edge_sdk.errors import InputError

    check_identifier(device, "--device")
    topics = connection.topics()
    if target.suffix == ".onnx":
        if profile is None:
            raise InputError(f"{target} is a model: pass --profile, the profile {device} runs")
        spec = spec_from_model(target, device, profile, seconds=seconds)
    else:
        spec = spec_from_bundle(target, device, seconds=seconds)
    bench = _device_bench(keys, repo, connection, topics, measure_timeout)
    warn_if_default_broker()
    answer = bench.measure(spec, client_id=session_id("bench"), progress=_progress)
    if json_output:
        emit_json(results_json(answer))
        return
    for r in answer.results:
        lat, fid = r.latency_ms or {}, r.fidelity or {}
        if r.error:
            stdout_console.print(f"{r.name} on {device}: failed: {r.error}", highlight=False)
            continue
        stdout_console.print(
            f"{r.name} on {device}: p50 {lat.get('p50', 0):.3f} ms, p95 {lat.get('p95', 0):.3f}, "
            f"p99 {lat.get('p99', 0):.3f}, {lat.get('throughput_per_s', 0):.0f}/s, "
            f"load {r.load_ms or 0:.0f} ms, peak RSS {r.peak_rss_mb or 0:.0f} MB, "
            f"cosine {fid.get('cosine') or 0:.5f}",
            highlight=False,
        )


def measure_on(
    device: str,
    seconds: float,
    timeout: float | None,
    keys: Path,
    repo: Path,
    connection: BrokerOptions,
) -> MeasureOn:
    """``build --measure-on``: every input checked now, before minutes of building."""
    from edge_sdk.build.device_measure import MeasureOn
    from edge_sdk.core.wire.topics import check_identifier

    check_identifier(device, "--measure-on")
    topics = connection.topics()
    bench = _device_bench(keys, repo, connection, topics, timeout)

    def send(spec: JobSpec) -> BenchAnswer:
        warn_if_default_broker()
        return bench.measure(spec, client_id=session_id("bench"), progress=_progress)

    return MeasureOn(device, send, seconds)


def _device_bench(
    keys: Path, repo: Path, connection: BrokerOptions, topics: Topics, deadline_s: float | None
) -> DeviceBench:
    from edge_sdk.fleet.bench import load_signers
    from edge_sdk.fleet.bench_service import DeviceBench

    return DeviceBench(
        signers=load_signers(keys),  # the keyring is checked before the broker's address
        address=connection.address(),
        topics=topics,
        repo=repo,
        deadline_s=deadline_s,
    )


def _progress(line: str) -> None:
    stderr_console.print(line, highlight=False)

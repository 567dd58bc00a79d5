"""``edge-sdk fleet bench BUNDLE|MODEL --device ID``: measure a bundle's artifact (or an .onnx
model in float) on one device of the fleet, with the device's own runtime (a signed benchmark
job: edge_sdk.fleet.bench)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    session_id,
    warn_if_default_broker,
)
from edge_sdk.cli.fleet_cmd import fleet_app

if TYPE_CHECKING:
    from edge_sdk.build.device_measure import MeasureOn
    from edge_sdk.core.bench_job import BenchAnswer

_Opt = typer.Option
DeviceOpt = Annotated[
    str, _Opt("--device", help="The device that measures (its id).", show_default=False)
]
SecondsOpt = Annotated[
    float, _Opt("--seconds", min=0.1, max=600, help="Timing per candidate on the device.")
]
MeasureSecondsOpt = Annotated[
    float,
    _Opt("--measure-seconds", min=0.1, max=600, help="Timing per candidate on the device."),
]
TimeoutOpt = Annotated[
    float | None,
    _Opt(
        "--measure-timeout",
        min=1,
        help="Give up waiting for the device after this many seconds [default: each "
        "candidate's time, plus loading and a margin].",
        show_default=False,
    ),
]


@fleet_app.command("bench")
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
    broker: BrokerOpt = "mqtt://127.0.0.1:1883",
    ca: CaOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    fleet: FleetOpt = "default",
    topic_prefix: PrefixOpt = "edge",
    json_output: JsonFlag = False,
) -> None:
    """Measure on DEVICE, without installing anything there: load time, latency p50/p95/p99,
    throughput, peak memory and fidelity against the golden vectors."""
    from edge_sdk.build.device_measure import results_json, spec_from_bundle, spec_from_model
    from edge_sdk.core.topics import Topics, check_identifier
    from edge_sdk.errors import InputError
    from edge_sdk.fleet.bench import job_serial, load_signers, published_chunks, run_job
    from edge_sdk.fleet.session import BrokerAddress

    check_identifier(device, "--device")
    topics = Topics(topic_prefix, fleet)
    if target.suffix == ".onnx":
        if profile is None:
            raise InputError(f"{target} is a model: pass --profile, the profile {device} runs")
        spec = spec_from_model(target, device, profile, seconds=seconds)
    else:
        spec = spec_from_bundle(target, device, seconds=seconds)
    signers = load_signers(keys)
    address = BrokerAddress.parse(broker, ca=ca, cert=cert, key=key)
    warn_if_default_broker()

    def progress(line: str) -> None:
        stderr_console.print(line, highlight=False)

    answer = run_job(
        address,
        topics,
        signers,
        spec,
        serial=job_serial(),
        deadline_s=measure_timeout,
        keep_chunks=published_chunks(repo, address, topics),
        progress=progress,
        client_id=session_id("bench"),
    )
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
    broker: str,
    tls: tuple[Path | None, Path | None, Path | None],
    fleet: str,
    topic_prefix: str,
) -> MeasureOn:
    """``build --measure-on``: every input checked now, before minutes of building."""
    from edge_sdk.build.device_measure import MeasureOn
    from edge_sdk.core.topics import Topics, check_identifier
    from edge_sdk.fleet.bench import JobSpec, job_serial, load_signers, published_chunks, run_job
    from edge_sdk.fleet.session import BrokerAddress

    check_identifier(device, "--measure-on")
    topics = Topics(topic_prefix, fleet)
    signers = load_signers(keys)
    ca, cert, key = tls
    address = BrokerAddress.parse(broker, ca=ca, cert=cert, key=key)

    def send(spec: JobSpec) -> BenchAnswer:
        warn_if_default_broker()
        return run_job(
            address,
            topics,
            signers,
            spec,
            serial=job_serial(),
            deadline_s=timeout,
            keep_chunks=published_chunks(repo, address, topics),
            progress=lambda line: stderr_console.print(line, highlight=False),
            client_id=session_id("bench"),
        )

    return MeasureOn(device, send, seconds)

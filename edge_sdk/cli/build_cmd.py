"""``edge-sdk build``."""

from __future__ import annotations

import contextlib
import enum
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from edge_sdk.cli._common import JsonFlag, emit_json, stderr_console, stdout_console
from edge_sdk.cli._fleet_options import (
    BROKER_OPTIONS,
    BrokerOptions,
    KeysOpt,
    MeasureSecondsOpt,
    RepoOpt,
    TimeoutOpt,
    with_broker_options,
)


class FirstOutputKind(enum.StrEnum):  # core.fidelity.FIRST_OUTPUT_KINDS, as typer choices
    auto = "auto"
    class_scores = "class-scores"
    values = "values"


def build_command(
    model: Annotated[
        Path,
        typer.Argument(
            help="Source model: .onnx, .tflite, .keras/.h5 or SavedModel, .joblib/.pkl "
            "(scikit-learn), .pmml, or an MLflow URI (models:/NAME/VERSION, "
            "runs:/RUN_ID/PATH; server from MLFLOW_TRACKING_URI)."
        ),
    ],
    profile: Annotated[
        list[str],
        typer.Option(
            "--profile",
            "-p",
            help="Profile id or .toml path; repeat it for one release with a variant per profile.",
        ),
    ],
    calibration: Annotated[
        Path | None, typer.Option(help=".npz of input arrays, or a folder of images.")
    ] = None,
    validation: Annotated[
        Path | None, typer.Option(help=".npz with optional 'labels', or a folder of images.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name (default: file stem).")] = None,
    version: Annotated[
        str | None, typer.Option(help="Integer or MAJOR.MINOR.PATCH (default: next in --out).")
    ] = None,
    label: Annotated[str | None, typer.Option(help="Human-readable version label.")] = None,
    out: Annotated[Path, typer.Option(help="Directory for the bundle.")] = Path("out"),
    key: Annotated[
        list[Path] | None, typer.Option("--key", help="Online signing key (repeat for more).")
    ] = None,
    input_shape: Annotated[
        list[str] | None,
        typer.Option("--input-shape", help="Fix a dynamic input: NAME=1,3,224,224 (repeatable)."),
    ] = None,
    image_scale: Annotated[
        float | None, typer.Option(help="Image folders: pixel multiplier (profile default 1/255).")
    ] = None,
    image_mean: Annotated[
        str | None, typer.Option(help="Image folders: per-channel mean, e.g. 0.485,0.456,0.406.")
    ] = None,
    image_std: Annotated[
        str | None, typer.Option(help="Image folders: per-channel std, e.g. 0.229,0.224,0.225.")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Replace an existing bundle of this version.")
    ] = False,
    first_output: Annotated[
        FirstOutputKind,
        typer.Option(
            "--first-output",
            help="What the first output holds: class-scores (judged by top-1 agreement too), "
            "values (coordinates, boxes, embeddings: judged by closeness alone), or auto "
            "(an [N, K] float output read as class scores).",
        ),
    ] = FirstOutputKind.auto,
    measure_on: Annotated[
        str | None,
        typer.Option(
            "--measure-on",
            help="Measure the candidates on this device of the fleet (a signed benchmark job) "
            "and choose by its figures; the broker and --keys options say how to reach it.",
            show_default=False,
        ),
    ] = None,
    measure_seconds: MeasureSecondsOpt = 2.0,
    measure_timeout: TimeoutOpt = None,
    keys: KeysOpt = Path("keys"),
    repo: RepoOpt = Path("fleet-repo"),
    connection: BrokerOptions = BROKER_OPTIONS,
    json_output: JsonFlag = False,
) -> None:
    """Convert, quantize, measure and pack a model into one signed bundle for a profile; with
    several --profile, one release: a bundle per profile, all of one name and version (publish
    each with `fleet publish`; every device installs its own profile's variant)."""
    from edge_sdk.build.data import parse_input_shapes
    from edge_sdk.build.pipeline import BuildRequest, build
    from edge_sdk.core.profiles import override_image, resolve_profile
    from edge_sdk.errors import InputError

    # Every profile is resolved before the first build starts: a typo in the last one costs
    # nothing.
    profiles = [
        override_image(resolve_profile(p), image_scale, image_mean, image_std) for p in profile
    ]
    ids = [p.id for p in profiles]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise InputError(f"--profile {', '.join(twice)} given twice; name each profile once")
    shapes = parse_input_shapes(input_shape or [])
    device = None
    if measure_on is not None:
        from edge_sdk.cli.fleet_bench_cmd import measure_on as device_for

        device = device_for(measure_on, measure_seconds, measure_timeout, keys, repo, connection)
    reports = []
    for hardware in profiles:
        request = BuildRequest(
            model=model,
            profile=hardware,
            out=out,
            calibration=calibration,
            validation=validation,
            name=name,
            version=version,
            label=label,
            keys=tuple(key or ()),
            input_shapes=shapes,
            force=force,
            measure_on=device,
            first_output=first_output.value,
        )
        with _progress(None if len(profiles) == 1 else hardware.id) as progress:
            result = _measured(build, request, progress)
        reports.append(result.report)
        if version is None:  # the first build chose the next version in --out: keep it
            version, label = str(result.report["version"]), str(result.report["label"])
    _print_reports(reports, json_output)


def _measured(build: Any, request: Any, progress: Callable[[str], None]) -> Any:
    """A build; when its device could not measure, this host's figures before the one line."""
    if request.measure_on is None:
        return build(request, progress=progress)
    from edge_sdk.fleet.bench import DeviceBenchError  # paho: only when a device measures

    try:
        return build(request, progress=progress)
    except DeviceBenchError as e:
        for line in e.host_figures:
            stderr_console.print(line, highlight=False)
        raise


@contextlib.contextmanager
def _progress(profile: str | None) -> Iterator[Callable[[str], None]]:
    """A spinner on a terminal; elsewhere (CI, a log, a pipe) one plain line per stage and
    candidate, with the time since the build started, so a long build is not silent."""
    prefix = "" if profile is None else f"{profile}: "
    if stderr_console.is_terminal:
        with stderr_console.status(f"building {prefix}".strip()) as status:
            yield lambda step: status.update(prefix + step)
        return
    started = time.monotonic()

    def line(step: str) -> None:
        elapsed = time.monotonic() - started
        # "[   3.2s] building candidate fp16": the bracket tells it from the one error line.
        sys.stderr.write(f"[{elapsed:6.1f}s] {prefix}{step}\n")
        sys.stderr.flush()

    yield line


def _print_reports(reports: list[dict[str, Any]], json_output: bool) -> None:
    from edge_sdk.cli._report import print_build_report

    if len(reports) == 1:
        if json_output:
            emit_json(reports[0])
        else:
            print_build_report(stdout_console, reports[0])
        return
    first = reports[0]
    if json_output:
        emit_json(
            {
                "name": first["name"],
                "version": first["version"],
                "label": first["label"],
                "profiles": [r["profile"] for r in reports],
                "bundles": [r["bundle"] for r in reports],
                "variants": reports,
            }
        )
        return
    for report in reports:
        print_build_report(stdout_console, report)
    stdout_console.print(
        f"release {first['name']} {first['label']}: {len(reports)} variants "
        f"({', '.join(r['profile'] for r in reports)}); publish each bundle with "
        "`edge-sdk fleet publish`",
        highlight=False,
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.command("build")(with_broker_options(build_command))

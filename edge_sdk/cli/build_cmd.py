"""``edge-sdk build``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_sdk.cli._common import JsonFlag, emit_json, stderr_console, stdout_console


def build_command(
    model: Annotated[Path, typer.Argument(help="Source model (.onnx).")],
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile id or .toml path.")],
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
    json_output: JsonFlag = False,
) -> None:
    """Convert, quantize, measure and pack a model into one signed bundle for a profile."""
    from edge_sdk.build import BuildRequest, build
    from edge_sdk.data import parse_input_shapes
    from edge_sdk.profiles import override_image, resolve_profile
    from edge_sdk.report import print_build_report

    request = BuildRequest(
        model=model,
        profile=override_image(resolve_profile(profile), image_scale, image_mean, image_std),
        out=out,
        calibration=calibration,
        validation=validation,
        name=name,
        version=version,
        label=label,
        keys=tuple(key or ()),
        input_shapes=parse_input_shapes(input_shape or []),
        force=force,
    )
    with stderr_console.status("building") as status:
        result = build(request, progress=lambda step: status.update(step))
    if json_output:
        emit_json(result.report)
    else:
        print_build_report(stdout_console, result.report)


def register(app: typer.Typer) -> None:
    app.command("build")(build_command)

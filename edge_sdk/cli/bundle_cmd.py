"""``edge-sdk inspect|verify|sign|bench``: everything done to a finished bundle."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from edge_sdk.cli._common import JsonFlag, emit_json, stderr_console, stdout_console

BundleArg = Annotated[Path, typer.Argument(help="Bundle file (.edgebundle).")]


def inspect_command(bundle: BundleArg, json_output: JsonFlag = False) -> None:
    """Show a bundle's manifest, build report and signature state (does not verify trust)."""
    from edge_sdk.cli._report import print_manifest
    from edge_sdk.core.bundle import parse_manifest_json, read_header

    # Only the manifest is read: the artifact and golden vectors may be large, and are not shown.
    header = read_header(bundle)
    # Every field a valid manifest must have, as parsed, plus whatever else the file holds.
    manifest = {
        **parse_manifest_json(header.manifest_bytes, str(bundle)),
        **header.manifest.to_json(),
    }
    if json_output:
        size = bundle.stat().st_size
        emit_json({"manifest": manifest, "signed": header.signed, "bytes": size})
        return
    print_manifest(stdout_console, manifest, {"signed": "yes" if header.signed else "no"})
    if header.manifest.report.get("candidates"):
        _print_report(header.manifest.report)


def _print_report(report: dict[str, Any]) -> None:
    """The build report as the build printed it; a report that is not in that form (an older or
    a hand-made bundle: the report is informational) gets a note instead of a half table."""
    from edge_sdk.cli._report import print_build_report

    try:
        with stdout_console.capture() as capture:
            print_build_report(stdout_console, report)
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError, IndexError) as e:
        stderr_console.print(
            f"note: the build report in this bundle is not in the form edge-sdk writes "
            f"({type(e).__name__}); showing the manifest only",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    stdout_console.file.write(capture.get())


def verify_command(
    bundle: BundleArg,
    trust: Annotated[Path, typer.Option("--trust-root", help="Pinned trust root (root.json).")],
    json_output: JsonFlag = False,
) -> None:
    """Check a bundle's signatures against a trust root and every file against its signed hash."""
    from rich.markup import escape

    from edge_sdk.core.bundle import read_bundle, shown_label
    from edge_sdk.core.trust import verify_bundle
    from edge_sdk.signing.keys import load_trust_root

    b = read_bundle(bundle)
    targets = verify_bundle(load_trust_root(trust), b, str(bundle))
    result = {
        "bundle": str(bundle),
        "verified": True,
        "name": b.manifest.name,
        "version": b.manifest.version,
        "version_label": b.manifest.label,
        "profile": b.manifest.profile,
        "expires": targets.expires.isoformat(),
    }
    if json_output:
        emit_json(result)
    else:
        stdout_console.print(
            f"[green]verified[/] {b.manifest.name} {escape(shown_label(b.manifest.label))} "
            f"({b.manifest.profile}), "
            f"signatures valid until {targets.expires:%Y-%m-%d}"
        )


def sign_command(
    bundle: BundleArg,
    key: Annotated[list[Path], typer.Option("--key", help="Online signing key (repeatable).")],
    expires_days: Annotated[
        int, typer.Option(help="Signature lifetime for an unsigned bundle.")
    ] = 365,
    json_output: JsonFlag = False,
) -> None:
    """Add signatures to a bundle (a second signer for a threshold, or an unsigned build)."""
    from datetime import timedelta

    from edge_sdk.core.bundle import read_bundle, write_bundle
    from edge_sdk.core.trust import add_signatures, sign_files
    from edge_sdk.signing.keys import load_signer

    signers = [load_signer(k) for k in key]
    b = read_bundle(bundle)
    if b.signatures is None:
        expires = datetime.now(UTC) + timedelta(days=expires_days)
        signatures = sign_files(
            b.signed_files(), signers, expires=expires, custom=b.manifest.identity()
        )
    else:
        signatures = add_signatures(b.signatures, signers)
    write_bundle(bundle, b.with_signatures(signatures))
    if json_output:
        emit_json({"bundle": str(bundle), "signatures_added": len(signers)})
    else:
        stdout_console.print(f"signed {bundle} with {len(signers)} key(s)")


def bench_command(
    model: Annotated[Path, typer.Argument(help="An .onnx or .tflite model, or a bundle.")],
    threads: Annotated[int | None, typer.Option(help="Threads (default: all cores).")] = None,
    seconds: Annotated[float, typer.Option(help="Seconds of timed runs.")] = 3.0,
    input_shape: Annotated[
        list[str] | None, typer.Option("--input-shape", help="NAME=1,3,224,224 for dynamic inputs.")
    ] = None,
    inputs: Annotated[
        Path | None,
        typer.Option(
            "--inputs",
            help="An .npz with one array per model input, fed as saved (real values: control "
            "values, states); default: random values (a bundle: its golden sample).",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Latency p50/p95/p99, throughput and peak memory of a model on this host (batch 1)."""
    from edge_sdk.build.benchmark import bench
    from edge_sdk.build.data import parse_input_shapes
    from edge_sdk.cli._report import print_bench

    result = bench(
        model,
        threads=threads,
        seconds=seconds,
        input_shapes=parse_input_shapes(input_shape or []),
        inputs=inputs,
    )
    if json_output:
        emit_json(result)
    else:
        print_bench(stdout_console, result)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)
    app.command("verify")(verify_command)
    app.command("sign")(sign_command)
    app.command("bench")(bench_command)

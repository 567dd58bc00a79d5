"""Readable terminal tables for build reports, bundles and benchmarks (rich)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}MB" if n >= 100_000 else f"{n / 1e3:.1f}kB"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None, fmt: str = ".4f") -> str:
    return "-" if x is None else format(x, fmt)


def print_build_report(console: Console, report: Mapping[str, Any]) -> None:
    table = Table(
        title=f"candidates for {report['profile']} ({report['selection']} within budget)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    columns = (
        "candidate",
        "size",
        "p50 ms",
        "p95 ms",
        "speed",
        "top-1",
        "cosine",
        "max err",
        "acc",
    )
    for column in columns:
        table.add_column(column, no_wrap=True)
    source = report["source_latency_ms"]
    table.add_row(
        "source",
        _mb(report["source_bytes"]),
        _num(source["p50"], ".3f"),
        _num(source["p95"], ".3f"),
        "1.00x",
        "-",
        "-",
        "-",
        _pct(report["source_accuracy"]),
    )
    for c in report["candidates"]:
        latency = c["latency_ms"] or {}
        fidelity = c["fidelity"] or {}
        speed = f"{source['p50'] / latency['p50']:.2f}x" if latency.get("p50") else "-"
        table.add_row(
            ("[bold green]* [/]" if c["chosen"] else "  ") + c["name"],
            _mb(c["artifact_bytes"]) if c["artifact_bytes"] else "-",
            _num(latency.get("p50"), ".3f"),
            _num(latency.get("p95"), ".3f"),
            speed,
            _pct(fidelity.get("top1_agreement")),
            _num(fidelity.get("cosine")),
            _num(fidelity.get("max_abs_error"), ".3g"),
            _pct(c["accuracy"]),
        )
    console.print(table)
    # Reasons are sentences: below the table they stay readable at any terminal width.
    for c in report["candidates"]:
        mark = "[bold green]CHOSEN[/]" if c["chosen"] else "      "
        console.print(f"{mark} {c['name']}: {c['reason']}", highlight=False)
    for line in report.get("routes") or []:
        console.print(f"[cyan]route:[/] {line}", highlight=False)
    for line in int8_judging_lines(report):
        console.print(line, highlight=False)
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    size_ratio = report["source_bytes"] / max(report["artifact_bytes"], 1)
    console.print(
        f"[bold]{report.get('bundle', '')}[/]  {report['precision']} {report['runtime']}, "
        f"{_mb(report['artifact_bytes'])} ({size_ratio:.1f}x smaller), "
        f"{report['speedup']:.2f}x faster on this host ({report['host_threads']} threads), "
        f"signed: {'yes' if report.get('signed') else 'no'}",
        highlight=False,
    )


JUDGES = {"exact": "exact QDQ simulation", "host": "this host's fused kernels"}


def int8_judging_lines(report: Mapping[str, Any]) -> list[str]:
    """One line per int8 candidate whose exact and host figures differ: both, and which one
    the choice used. The exact figure is what a VNNI, Arm or TensorRT target computes."""
    arithmetic = report.get("int8_arithmetic") or {}
    lines = []
    for c in report["candidates"]:
        exact, host = c.get("exact_fidelity"), c.get("host_fidelity")
        if not exact or not host or c.get("judged_by") not in JUDGES:
            continue
        differ = abs(exact["cosine"] - host["cosine"]) > 0.001 or (
            exact["top1_agreement"] != host["top1_agreement"]
        )
        if not differ:
            continue
        lines.append(
            f"int8 {c['name']}: exact QDQ cosine {exact['cosine']:.4f} "
            f"(top-1 {_pct(exact['top1_agreement'])}), this host's fused kernels "
            f"({arithmetic.get('host', '?')}) {host['cosine']:.4f} "
            f"(top-1 {_pct(host['top1_agreement'])}); judged by {JUDGES[c['judged_by']]}, "
            f"as the target ({arithmetic.get('target', '?')}) computes"
        )
    return lines


def print_manifest(console: Console, manifest: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    table = Table(show_header=False, title=f"{manifest['name']} v{manifest['version']}")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = {
        "label": manifest["label"],
        "profile": manifest["profile"],
        "runtime": manifest["runtime"],
        "precision": manifest["precision"],
        "artifact": f"{manifest['artifact']['file']} {_mb(manifest['artifact']['bytes'])}",
        "sha256": manifest["artifact"]["sha256"],
        "inputs": ", ".join(
            f"{t['name']} {t['shape']} {t['dtype']} {t['layout']}" for t in manifest["inputs"]
        ),
        "outputs": ", ".join(f"{t['name']} {t['shape']} {t['dtype']}" for t in manifest["outputs"]),
        "golden vectors": f"{manifest['golden']['count']} (atol {manifest['golden']['atol']:.3g})",
        "created": manifest["created"],
    }
    rows.update({k: str(v) for k, v in extra.items()})
    for key, value in rows.items():
        table.add_row(key, str(value))
    console.print(table)


def print_bench(console: Console, result: Mapping[str, Any]) -> None:
    latency = result["latency_ms"]
    table = Table(title=f"bench {result['model']} ({result['threads']} threads, batch 1)")
    for column in ("p50 ms", "p95 ms", "p99 ms", "throughput/s", "peak RSS MB", "runs"):
        table.add_column(column)
    table.add_row(
        f"{latency['p50']:.3f}",
        f"{latency['p95']:.3f}",
        f"{latency['p99']:.3f}",
        f"{latency['throughput_per_s']:.0f}",
        f"{result['peak_rss_mb']:.1f}",
        str(latency["runs"]),
    )
    console.print(table)

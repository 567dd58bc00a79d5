"""Readable terminal tables for build reports, bundles and benchmarks (rich)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from edge_sdk.cli._device_report import device_lines, where_timed
from edge_sdk.core.bundle import shown_label


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}MB" if n >= 100_000 else f"{n / 1e3:.1f}kB"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None, fmt: str = ".4f") -> str:
    return "-" if x is None else format(x, fmt)


def _size(n: int) -> str:
    """Three significant digits at most: the table's widest column stays narrow."""
    if n < 100_000:
        return f"{n / 1e3:.1f}kB"
    if n < 1e9:
        mb = n / 1e6
        return f"{mb:.2f}MB" if mb < 10 else f"{mb:.1f}MB" if mb < 100 else f"{mb:.0f}MB"
    return f"{n / 1e9:.2f}GB"


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return format(x, ".3f" if x < 10 else ".2f" if x < 100 else ".1f" if x < 1000 else ".0f")


def _ratio(x: float) -> str:
    return format(x, ".2f" if x < 10 else ".1f" if x < 100 else ".0f") + "x"


BUILD_COLUMNS = ("size", "p50 ms", "p95 ms", "speed", "top-1", "cosine", "max err", "acc")


def build_rows(report: Mapping[str, Any]) -> list[tuple[str, bool, list[str]]]:
    """(candidate, chosen, figures) per row of the build table, the source model first."""
    source = report["source_latency_ms"]
    rows = [
        (
            "source",
            False,
            [
                _size(report["source_bytes"]),
                _ms(source["p50"]),
                _ms(source["p95"]),
                "1.00x",
                "-",
                "-",
                "-",
                _pct(report["source_accuracy"]),
            ],
        )
    ]
    for c in report["candidates"]:
        latency = c["latency_ms"] or {}
        fidelity = c["fidelity"] or {}
        speed = _ratio(source["p50"] / latency["p50"]) if latency.get("p50") else "-"
        figures = [
            _size(c["artifact_bytes"]) if c["artifact_bytes"] else "-",
            _ms(latency.get("p50")),
            _ms(latency.get("p95")),
            speed,
            _pct(fidelity.get("top1_agreement")),
            _num(fidelity.get("cosine")),
            _num(fidelity.get("max_abs_error"), ".3g"),
            _pct(c["accuracy"]),
        ]
        rows.append((c["name"], bool(c["chosen"]), figures))
    return rows


def print_build_report(console: Console, report: Mapping[str, Any]) -> None:
    console.print(build_table(report, console.width))
    _print_build_notes(console, report)


def build_table(report: Mapping[str, Any], width: int) -> Table:
    """The candidates table, ``width`` columns at most while they leave the figures room (80
    always do)."""
    rows = build_rows(report)
    # The figures are never cut, at 80 columns too: the gap narrows to one space, then the
    # candidate's name folds (under its mark) when the figures leave it too little room.
    widths = [
        max(len(header), *(len(figures[i]) for _, _, figures in rows))
        for i, header in enumerate(BUILD_COLUMNS)
    ]
    longest = max(len(name) for name, _, _ in rows) + 2
    gap = 2 if width - sum(widths) - 2 * len(widths) >= longest else 1
    room = max(width - sum(widths) - gap * len(widths), 8)
    table = Table(
        title=f"candidates for {report['profile']} ({report['selection']} within budget)",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1) if gap == 2 else 0,
        collapse_padding=True,
    )
    table.add_column("candidate", no_wrap=True, min_width=min(longest, room))
    for header, column_width in zip(BUILD_COLUMNS, widths, strict=True):
        table.add_column(header, no_wrap=True, min_width=column_width, justify="right")
    for name, chosen, figures in rows:
        if name == "source":
            cell = Text(name)
        else:
            folded = "\n  ".join(name[i : i + room - 2] for i in range(0, len(name), room - 2))
            cell = Text.assemble(("* ", "bold green") if chosen else "  ", folded)
        table.add_row(cell, *figures)
    return table


def _print_build_notes(console: Console, report: Mapping[str, Any]) -> None:
    # Reasons are sentences: below the table they stay readable at any terminal width.
    for c in report["candidates"]:
        mark = "[bold green]CHOSEN[/]" if c["chosen"] else "      "
        console.print(f"{mark} {c['name']}: {c['reason']}", highlight=False)
    for line in report.get("routes") or []:
        console.print(f"[cyan]route:[/] {line}", highlight=False)
    for line in int8_judging_lines(report):
        console.print(line, highlight=False)
    for line in per_output_lines(report):
        console.print(line, highlight=False, markup=False)
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if report.get("stand_in_line"):
        console.print(f"[yellow]host:[/] {report['stand_in_line']}", highlight=False)
    for line in device_lines(report):
        console.print(line, highlight=False, markup=False)
    size_ratio = report["source_bytes"] / max(report["artifact_bytes"], 1)
    console.print(
        f"[bold]{report.get('bundle', '')}[/]  {report['precision']} {report['runtime']}, "
        f"{_mb(report['artifact_bytes'])} ({size_ratio:.1f}x smaller), "
        f"{report['speedup']:.2f}x faster {where_timed(report)} "
        f"({report['host_threads']} threads), "
        f"signed: {'yes' if report.get('signed') else 'no'}",
        highlight=False,
    )


JUDGES = {"exact": "exact QDQ simulation", "host": "this host's fused kernels"}


def per_output_lines(report: Mapping[str, Any]) -> list[str]:
    """For a model of several outputs, each output's figure for the chosen candidate and for
    the most faithful int8 one: which head a quantization loses, where one cosine hides it."""
    names = report.get("outputs") or []
    if len(names) < 2:
        return []
    built = [c for c in report["candidates"] if c.get("fidelity")]
    shown = [c for c in built if c["chosen"]]
    int8 = [c for c in built if c["precision"].startswith("int8") and not c["chosen"]]
    if int8:
        shown.append(max(int8, key=lambda c: c["fidelity"]["cosine"]))
    lines = []
    for c in shown:
        figures = c["fidelity"].get("per_output") or []
        if len(figures) != len(names):
            continue
        each = ", ".join(f"{n} {f:.4f}" for n, f in zip(names, figures, strict=True))
        lines.append(f"per output, {c['name']}: {each}")
    return lines


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
    shown = escape(shown_label(str(manifest["label"])))  # a label is the user's text, not markup
    table = Table(show_header=False, title=f"{manifest['name']} {shown}")
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

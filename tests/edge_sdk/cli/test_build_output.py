"""What `edge-sdk build` shows where users run it: plain progress lines in CI, a report that fits
80 columns without cutting a figure, and one line naming the extra when a dependency is missing.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from edge_sdk.cli._report import build_rows, build_table
from edge_sdk.core.bundle import read_bundle
from edge_sdk.core.extras import extra_for_module
from tests.edge_sdk.cli.progress import PROGRESS_LINE, messages

DIGITS = Path(__file__).parents[3] / "examples" / "digits"


def _edge_sdk(*argv: str | Path, prelude: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """The console script's own entry point in a fresh interpreter; ``prelude`` runs first."""
    code = f"import sys\n{prelude}\nsys.argv[0] = 'edge-sdk'\nfrom edge_sdk.cli import main\nmain()"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, argv)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
        check=False,
    )


def _assert_figures_whole(output: str, report: dict[str, Any], width: int) -> None:
    lines = output.splitlines()
    assert all(len(line) <= width for line in lines), output
    assert "…" not in output, output
    for _, _, figures in build_rows(report):
        row = r"\s+".join(re.escape(f) for f in figures)
        assert re.search(rf"(^|\s){row}$", output, re.MULTILINE), (figures, output)


def test_build_in_ci_prints_progress_and_an_80_column_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _edge_sdk(
        "build",
        DIGITS / "model.onnx",
        "-p",
        "jetson-orin",
        "--validation",
        DIGITS / "validation.npz",
        "--out",
        out,
        COLUMNS="80",
    )
    assert done.returncode == 0, done.stderr
    # stderr is a pipe here: a line per stage and per candidate, not a silent build.
    progress = [line for line in done.stderr.splitlines() if PROGRESS_LINE.match(line)]
    assert messages(done.stderr) == [], done.stderr
    (bundle,) = out.iterdir()
    report = read_bundle(bundle).manifest.report
    for candidate in report["candidates"]:
        assert any(line.endswith(f"building candidate {candidate['name']}") for line in progress)
    assert any(line.endswith("writing the bundle") for line in progress)
    _assert_figures_whole(done.stdout, report, 80)
    # `inspect` prints the same table from the bundle, at 80 columns too.
    shown = _edge_sdk("inspect", bundle, COLUMNS="80")
    assert shown.returncode == 0, shown.stderr
    _assert_figures_whole(shown.stdout.split("candidates for", 1)[1], report, 80)


_FIDELITY = st.fixed_dictionaries(
    {
        "top1_agreement": st.none() | st.floats(0, 1),
        "cosine": st.none() | st.floats(-1, 1),
        "max_abs_error": st.none() | st.floats(0, 1e6),
    }
)
# From a microsecond to ten seconds a run.
_LATENCY = st.fixed_dictionaries({"p50": st.floats(1e-3, 1e4), "p95": st.floats(1e-3, 1e4)})
_CANDIDATE = st.fixed_dictionaries(
    {
        "name": st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,39}", fullmatch=True),
        "chosen": st.booleans(),
        "artifact_bytes": st.integers(0, 10**11),
        "latency_ms": st.none() | _LATENCY,
        "fidelity": st.none() | _FIDELITY,
        "accuracy": st.none() | st.floats(0, 1),
        "reason": st.just("why"),
    }
)


@settings(max_examples=200, deadline=None)
@given(
    candidates=st.lists(_CANDIDATE, min_size=1, max_size=8),
    source=_LATENCY,
    source_bytes=st.integers(1, 10**11),
    width=st.integers(80, 160),
)
def test_no_figure_is_ever_cut_at_80_columns_or_more(
    candidates: list[dict[str, Any]], source: dict[str, float], source_bytes: int, width: int
) -> None:
    report = {
        "profile": "x86-64",
        "selection": "fastest",
        "source_latency_ms": source,
        "source_bytes": source_bytes,
        "source_accuracy": None,
        "candidates": candidates,
        "notes": [],
        "bundle": "out/b.edgebundle",
        "precision": "fp32",
        "runtime": "onnx",
        "artifact_bytes": 1,
        "speedup": 1.0,
        "host_threads": 2,
    }
    sink = io.StringIO()
    Console(file=sink, width=width, color_system=None).print(build_table(report, width))
    _assert_figures_whole(sink.getvalue(), report, width)


# --- a missing extra --------------------------------------------------------------------------


def _distribution() -> str:
    return metadata.packages_distributions()["edge_sdk"][0]


def test_build_without_onnx_names_the_host_extra(tmp_path: Path) -> None:
    done = _edge_sdk(
        "build",
        DIGITS / "model.onnx",
        "-p",
        "x86-64",
        "--out",
        tmp_path,
        prelude="sys.modules['onnx'] = None  # as on a device install",
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr == (
        "error: edge-sdk needs the 'host' extra here (onnx is not installed): "
        f"pip install '{_distribution()}[host]'\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_without_typer_the_command_still_names_the_extra() -> None:
    done = _edge_sdk("--help", prelude="sys.modules['typer'] = None")
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1 and "(typer is not installed)" in done.stderr
    assert f"pip install '{_distribution()}[host]'" in done.stderr


def test_version_needs_no_extra() -> None:
    done = _edge_sdk("--version", prelude="sys.modules['typer'] = sys.modules['rich'] = None")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("edge-sdk ") and f"({_distribution()}, Python " in done.stdout


def test_an_import_error_inside_edge_sdk_stays_a_bug() -> None:
    done = _edge_sdk(
        "inspect",
        "x.edgebundle",
        prelude="sys.modules['edge_sdk.cli._report'] = None",
        COLUMNS="80",
    )
    assert done.returncode == 70 and done.stderr.startswith("internal error: ")


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("onnx", "host"),
        ("onnxruntime.quantization", "host"),  # in [agent] too: the host's commands want host
        ("PIL", "host"),
        ("paho.mqtt.client", "host"),
        ("tensorflow", "tflite"),  # installed as tensorflow-cpu
        ("boto3", "stores"),
        ("torch", "torch"),
        ("numpy", None),  # a base dependency: its absence is a broken install, not an extra
        ("edge_sdk.cli._report", None),
        ("no_such_module", None),
    ],
)
def test_the_extra_comes_from_the_installed_metadata(module: str, extra: str | None) -> None:
    assert extra_for_module(module, _distribution()) == extra

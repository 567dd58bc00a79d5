"""``converters.entropy.kl_threshold`` returns onnxruntime's entropy threshold, on generated
histograms (Hypothesis) and on a calibrator's real ones, and the calibration uses it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnxruntime.quantization.calibrate import HistogramCollector

from converters.entropy import _in_workers, kl_threshold, thresholds, use_fast_threshold


def _collector(num_quantized_bins: int) -> HistogramCollector:
    return HistogramCollector(
        method="entropy",
        symmetric=False,
        num_bins=0,
        num_quantized_bins=num_quantized_bins,
        percentile=99.999,
        scenario="same",
    )


@st.composite
def histograms(draw: st.DrawFn) -> tuple[tuple[Any, ...], int]:
    num_quantized_bins = draw(st.sampled_from([4, 8, 16, 32, 128]))
    num_bins = draw(st.integers(num_quantized_bins, 400))
    # Sparse and heavy-tailed counts: zeros, a few large bins, outliers far from the centre.
    counts = draw(
        st.lists(
            st.one_of(st.just(0), st.integers(0, 5), st.integers(0, 10**6)),
            min_size=num_bins,
            max_size=num_bins,
        )
    )
    hist = np.array(counts, dtype=np.int64)
    threshold = float(np.float32(draw(st.floats(1e-3, 1e3))))
    edges = np.linspace(-threshold, threshold, num_bins + 1, dtype=np.float32)
    low = -threshold * draw(st.floats(0.0, 1.0))
    high = threshold * draw(st.floats(0.0, 1.0))
    return (hist, edges, np.float32(low), np.float32(high), np.float32(threshold)), (
        num_quantized_bins
    )


@settings(max_examples=100, deadline=None)
@given(histograms())
def test_same_threshold_as_onnxruntime(case: tuple[tuple[Any, ...], int]) -> None:
    histogram, num_quantized_bins = case
    expected = _collector(num_quantized_bins).get_entropy_threshold(histogram, num_quantized_bins)
    got = kl_threshold(histogram, num_quantized_bins)
    assert got[0] == expected[0] and got[1] == expected[1]
    assert got[0].dtype == expected[0].dtype and got[1].dtype == expected[1].dtype


def test_same_thresholds_on_collected_histograms() -> None:
    """Histograms as the collector builds them from activations (2048 bins, merged across
    batches whose range grows, as in calibration), not only generated ones."""
    rng = np.random.default_rng(7)
    collector = HistogramCollector("entropy", False, 2048, 128, 99.999, "same")
    for scale in (1.0, 1.5, 0.5):
        collector.collect(
            {
                "relu": [np.maximum(rng.normal(0, scale, (4, 64)), 0).astype(np.float32)],
                "heavy": [rng.standard_t(2, (4, 64)).astype(np.float32) * scale],
            }
        )
    for histogram in collector.histogram_dict.values():
        expected = collector.get_entropy_threshold(histogram, 128)
        assert kl_threshold(histogram, 128) == expected


def test_calibrator_uses_it() -> None:
    class Calibrator:
        collector = _collector(128)

    calibrator = Calibrator()
    use_fast_threshold(calibrator)
    assert calibrator.collector.get_entropy_threshold is kl_threshold
    use_fast_threshold(object())  # a calibrator without a histogram collector: left alone


def _collected(tensors: int) -> HistogramCollector:
    rng = np.random.default_rng(11)
    collector = HistogramCollector("entropy", False, 256, 32, 99.999, "same")
    for scale in (1.0, 2.0):
        collector.collect(
            {
                f"t{k}": [rng.standard_t(2 + k % 5, (2, 64)).astype(np.float32) * scale]
                for k in range(tensors)
            }
        )
    return collector


def test_thresholds_over_processes_are_onnxruntimes() -> None:
    """Spread over worker processes, every tensor's threshold is still onnxruntime's own."""
    collector = _collected(40)
    expected = collector.compute_entropy()  # onnxruntime's, one tensor after another
    parallel = thresholds(collector.histogram_dict, 32, workers=2)
    assert parallel == {t: v[:2] for t, v in expected.items()}
    # The workers really ran it (no quiet fall-back to this process).
    names = list(collector.histogram_dict)
    assert _in_workers(collector.histogram_dict, names, 32, 2) == parallel
    assert list(parallel) == list(expected)


def test_the_calibrator_computes_them_all_with_it() -> None:
    collector = _collected(40)
    expected = collector.compute_entropy()

    class Calibrator:
        pass

    calibrator = Calibrator()
    calibrator.collector = collector  # type: ignore[attr-defined]
    use_fast_threshold(calibrator)
    got = collector.compute_entropy()
    assert list(got) == list(expected)
    for name, values in expected.items():
        assert got[name][:2] == values[:2]
        assert np.array_equal(got[name][2], values[2]) and np.array_equal(got[name][3], values[3])


STOP_SCRIPT = """
import signal, sys
import numpy as np
from converters.entropy import thresholds

class Terminated(Exception):  # as the CLI's SIGTERM handler raises (edge_sdk.cli._common)
    pass

def on_term(signum, frame):
    raise Terminated()

signal.signal(signal.SIGTERM, on_term)
rng = np.random.default_rng(0)
histograms = {
    f"t{k}": (rng.integers(0, 1000, 2048), np.linspace(-1, 1, 2049, dtype=np.float32),
              np.float32(-1), np.float32(1), np.float32(1))
    for k in range(400)
}
print("searching", flush=True)
try:
    thresholds(histograms, 128, workers=2)
except KeyboardInterrupt:
    print("stopped", flush=True)
    sys.exit(130)
except Terminated:
    print("stopped", flush=True)
    sys.exit(143)
print("finished", flush=True)
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_during_the_parallel_search_stops_it_without_worker_tracebacks(
    tmp_path: Path, signum: int, code: int
) -> None:
    """Ctrl-C (and a service manager's SIGTERM) reach the whole process group: the build
    stops with its own exit, cancelling the rest of the search, and no worker prints a
    traceback (a worker idle between chunks would, without its own signal dispositions)."""
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", STOP_SCRIPT],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "searching"
    time.sleep(1.5)  # the workers are forked and busy
    started = time.monotonic()
    os.killpg(child.pid, signum)
    out, err = child.communicate(timeout=60)
    assert child.returncode == code, (out, err)
    assert "stopped" in out and "finished" not in out
    assert "Traceback" not in err, err
    assert time.monotonic() - started < 20

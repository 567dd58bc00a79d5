"""onnxruntime's entropy (KL) calibration threshold, computed with whole-array numpy operations.

onnxruntime's ``HistogramCollector.get_entropy_threshold`` tries every symmetric threshold of
a tensor's histogram and, for each, sums bins with Python's built-in ``sum`` over numpy arrays
and Python loops over the quantized bins. With the 2048 bins we calibrate with (see
``converters.int8_static``) that took about a second per tensor: 35 s of a 45 s build of Silero
VAD (32 tensors), and over ten minutes on PP-OCR's text detector, whose histograms also grow
as calibration widens their range.

``kl_threshold`` is the same computation, step for step and in the same dtypes (int64 counts,
then onnxruntime's own ``smooth_distribution`` and ``entropy``), with the sums done by prefix
sums and reshapes, so it returns the same threshold; a property test checks that against
onnxruntime's method on generated histograms.

Each tensor's search is independent of the others', so a calibration with many tensors spreads
them over the host's cores (``thresholds``): 19 of the 36 s of a text detector's entropy step
were this search, one tensor after another.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import signal
import warnings
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
from onnxruntime.quantization.calibrate import entropy

from edge_sdk.runtime.ort import host_threads

# Below this many tensors per worker, starting processes costs more than the search saves.
TENSORS_PER_WORKER = 16
MAX_WORKERS = 8

_EPS = 0.0001  # smooth_distribution's default, which get_entropy_threshold uses


def kl_threshold(histogram: tuple[Any, ...], num_quantized_bins: int) -> tuple[Any, Any]:
    """The (low, high) threshold minimising KL divergence, as onnxruntime's method returns it.

    ``histogram`` is the collector's ``(hist, hist_edges, min, max, ...)``."""
    hist = np.asarray(histogram[0])
    hist_edges = histogram[1]
    num_bins = hist.size
    zero_bin_index = num_bins // 2
    num_half_quantized_bin = num_quantized_bins // 2
    dtype = hist_edges.dtype
    # before[k] = hist[:k].sum(), exact for the collector's int64 counts.
    before = np.concatenate((np.zeros(1, hist.dtype), np.cumsum(hist)))
    total = before[-1]
    steps = range(num_half_quantized_bin, zero_bin_index + 1)
    kl_divergence = np.zeros(len(steps))
    thresholds: list[tuple[Any, Any]] = []
    for k, i in enumerate(steps):
        start_index = zero_bin_index - i
        end_index = min(zero_bin_index + i + 1, num_bins)
        thresholds.append((hist_edges[start_index], hist_edges[end_index]))
        sliced = hist[start_index:end_index]
        p = sliced.copy()
        p[0] += before[start_index]
        p[-1] += total - before[end_index]
        nonzeros = (p != 0).astype(np.int64)
        merged = sliced.size // num_quantized_bins
        whole = num_quantized_bins * merged
        quantized_bins = np.zeros(num_quantized_bins, dtype=np.int64)
        if merged:
            quantized_bins += sliced[:whole].reshape(num_quantized_bins, merged).sum(axis=1)
        quantized_bins[-1] += sliced[whole:].sum()
        # Expand back to p's length: each merged bin's count spread over its non-zero bins,
        # truncated to int64 as onnxruntime's assignment into an int64 array does; the bins
        # past the last whole group stay zero there too.
        q = np.zeros(p.size, dtype=np.int64)
        if merged:
            norm = nonzeros[:whole].reshape(num_quantized_bins, merged).sum(axis=1)
            spread = np.zeros(num_quantized_bins, dtype=np.int64)
            has = norm != 0
            spread[has] = (quantized_bins[has] / norm[has]).astype(np.int64)
            q[:whole] = np.repeat(spread, merged)
        kl_divergence[k] = np.array(_kl(p, q), dtype=dtype)
    optimal = thresholds[int(np.argmin(kl_divergence))]
    min_value, max_value = histogram[2], histogram[3]
    if optimal[0] < min_value:
        optimal = (min_value, optimal[1])
    if optimal[1] > max_value:
        optimal = (optimal[0], max_value)
    return optimal


def _smooth(p: np.ndarray) -> np.ndarray | None:
    """onnxruntime's ``smooth_distribution`` (eps 0.0001), value for value: each bin gets
    either +eps (a zero bin) or -eps1 (a non-zero one) added in float32, and of the two
    products onnxruntime adds, one is exactly zero."""
    zero = p == 0
    n_zeros = int(zero.sum())
    n_nonzeros = p.size - n_zeros
    if not n_nonzeros:
        return None
    eps1 = _EPS * float(n_zeros) / float(n_nonzeros)
    return p.astype(np.float32) + np.where(zero, np.float32(_EPS), np.float32(-eps1))


def _kl(p: np.ndarray, q: np.ndarray) -> Any:
    """onnxruntime's ``entropy(smooth(p), smooth(q))`` in float32, without its masks where
    smoothing left no bin at zero (always, unless a normalised bin underflows)."""
    ps, qs = _smooth(p), _smooth(q)
    if ps is None or qs is None:
        return np.inf
    pk = 1.0 * ps / np.sum(ps, axis=0, keepdims=True)
    qk = 1.0 * qs / np.sum(qs, axis=0, keepdims=True)
    if not (pk.all() and qk.all()):
        return entropy(ps, qs)
    return np.sum(pk * np.log(pk / qk), axis=0).astype(pk.dtype)


def thresholds(
    histograms: Mapping[str, tuple[Any, ...]], num_quantized_bins: int, workers: int | None = None
) -> dict[str, tuple[Any, Any]]:
    """``kl_threshold`` of every histogram, over up to ``workers`` processes (default: this
    host's cores, one per TENSORS_PER_WORKER tensors).

    The workers are forks of this process. A fork server or spawned interpreter would import
    the caller's main module again in every worker (a user's script that builds at its top
    level would start a build in each); a fork copies only the calling thread, and the workers
    run numpy on copies of the histograms, never touching onnxruntime, whose idle threads (and
    any lock they held) a fork leaves behind."""
    names = list(histograms)
    if workers is None:
        workers = min(host_threads(MAX_WORKERS), len(names) // TENSORS_PER_WORKER)
    if workers > 1:
        # Python 3.12+ warns of fork with threads (the docstring says why it is sound here);
        # the pool forks its workers as work is handed out, so the whole search is inside.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*fork.*", DeprecationWarning)
            found = _in_workers(histograms, names, num_quantized_bins, workers)
        if found is not None:
            return found
    return {n: kl_threshold(histograms[n], num_quantized_bins) for n in names}


def _in_workers(
    histograms: Mapping[str, tuple[Any, ...]], names: list[str], bins: int, workers: int
) -> dict[str, tuple[Any, Any]] | None:
    """The thresholds from forked workers, or None when no worker could run them."""
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker)
    try:
        found = pool.map(
            kl_threshold,
            [histograms[n] for n in names],
            itertools.repeat(bins),
            chunksize=max(1, len(names) // (4 * workers)),
        )
        return dict(zip(names, found, strict=True))
    except (OSError, BrokenProcessPool):  # no process to be had, or one died: the caller's own
        return None
    finally:
        # Also on Ctrl-C or SIGTERM: the build stops now, not after the rest of the search.
        pool.shutdown(wait=False, cancel_futures=True)


def _worker() -> None:
    """A worker leaves Ctrl-C to the build (which stops the pool and says one line; a worker
    would print a traceback each) and dies quietly of SIGTERM, whose handler it inherited."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _compute_entropy(collector: Any) -> dict[str, tuple[Any, ...]]:
    """onnxruntime's ``HistogramCollector.compute_entropy``: per tensor, the threshold, then
    the histogram's counts and edges."""
    found = thresholds(collector.histogram_dict, collector.num_quantized_bins)
    return {t: (*found[t], *h[:2]) for t, h in collector.histogram_dict.items()}


def use_fast_threshold(calibrator: Any) -> None:
    """Make an entropy calibrator's collector compute thresholds with ``kl_threshold``, spread
    over the host's cores."""
    collector = getattr(calibrator, "collector", None)
    if collector is not None and hasattr(collector, "get_entropy_threshold"):
        collector.get_entropy_threshold = kl_threshold
        collector.compute_entropy = functools.partial(_compute_entropy, collector)

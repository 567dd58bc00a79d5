"""One benchmark candidate, measured in a process of its own: ``python -m agent.bench_run DIR``.

The agent starts this at the lowest CPU priority with an address-space limit and kills it at the
job's deadline (agent.bench_job), so a candidate that is slow, huge or crashes the runtime costs
the serving process nothing. ``DIR/task.json`` says what to run; the figures are written to
``DIR/result.json``: load time, latency p50/p95/p99 and throughput on the golden inputs, peak RSS
of this process, and fidelity of the outputs against the source model's golden outputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

TASK, RESULT = "task.json", "result.json"


def limit(max_memory_mb: int) -> None:
    """First thing in the child: lowest priority, bounded address space, no core dumps.
    SCHED_IDLE where Linux has it: the child runs only when live inference leaves a core
    idle (nice 19 alone still takes a share of a busy core)."""
    os.nice(19)
    # Not Linux, or not allowed: nice 19 stands.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    cap = max_memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def measure(task: dict[str, Any]) -> dict[str, Any]:
    from edge_sdk import runtime
    from edge_sdk.core import golden
    from edge_sdk.core.fidelity import compare
    from edge_sdk.core.tensors import TensorSpec
    from edge_sdk.runtime.timing import measure_interleaved

    inputs = [TensorSpec.from_json(t) for t in task["inputs"]]
    outputs = [TensorSpec.from_json(t) for t in task["outputs"]]
    feeds, expected = golden.unpack(Path(task["golden"]).read_bytes(), inputs, outputs)
    settings = task["settings"]
    threads = max(1, min(int(settings.get("threads", 1)), os.cpu_count() or 1))
    started = time.perf_counter()
    model = runtime.load(
        Path(task["artifact"]),
        runtime=task["runtime"],
        threads=threads,
        inputs=inputs,
        outputs=outputs,
        settings=settings,
    )
    load_ms = (time.perf_counter() - started) * 1000
    got = runtime.evaluate(model, feeds)
    fidelity = compare([expected[o.name] for o in outputs], got)
    sample = {k: v[:1] for k, v in feeds.items()}
    delay = float(task.get("slow_ms", 0.0)) / 1000

    def once() -> object:
        out = model.run(sample)
        if delay:
            time.sleep(delay)  # test hook: a device on which this candidate is slow
        return out

    runs = {"c": once}
    baseline = task.get("baseline")
    if baseline:
        # The job's baseline in this same process, timed in rounds interleaved with the
        # candidate: a burst of load on the device hits both alike.
        base = runtime.load(
            Path(baseline["artifact"]),
            runtime=task["runtime"],
            threads=threads,
            inputs=inputs,
            outputs=outputs,
            settings=baseline["settings"],
        )
        runs["b"] = lambda: base.run(sample)
    timed = measure_interleaved(runs, seconds=float(task["seconds"]) * len(runs))
    stats = timed["c"]
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "load_ms": round(load_ms, 3),
        "latency_ms": stats.to_json(),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "fidelity": fidelity.to_json(),
        "threads": threads,
        "priority": _priority(),
        "baseline_p50_ms": round(timed["b"].p50_ms, 4) if "b" in timed else None,
    }


def _priority() -> str:
    try:
        if os.sched_getscheduler(0) == os.SCHED_IDLE:
            return "SCHED_IDLE, nice 19"
    except (AttributeError, OSError):
        pass
    return "nice 19"


def main(argv: list[str]) -> int:
    directory = Path(argv[0])
    task = json.loads((directory / TASK).read_text())
    limit(int(task["max_memory_mb"]))
    try:
        result = measure(task)
    except MemoryError:
        result = {"error": f"out of memory within the job's {task.get('max_memory_mb')} MB"}
    except Exception as e:  # one line for the operator; the candidate is what failed
        from edge_sdk.core.text import one_line

        result = {"error": one_line(f"{type(e).__name__}: {e}", 300)}
    tmp = directory / (RESULT + ".tmp")
    tmp.write_text(json.dumps(result))
    tmp.rename(directory / RESULT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

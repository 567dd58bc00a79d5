"""Delivery benchmark: a real agent process updating itself through a real Mosquitto on this
machine, against the raw limit of the same broker, in one run.

1. Update time for a 1 MB and a 10 MB bundle (assignment published -> new version serving, and
   -> committed), against a raw transfer of the same chunk bytes through the same broker (a
   bare subscriber receiving them). Rounds alternate raw and agent so drift hits both alike.
2. A second version that changes a few weights: bytes fetched against the bundle's size.
3. Idle cost: the agent holding one model, against a bare Python process holding the same
   onnxruntime session, sampled over the same window.

Every figure that depends on this shared machine's speed is a ratio. Run:
``python -m bench.bench_agent`` (needs the mosquitto binary; takes about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edge_sdk.core.wire.topics import Topics
from edge_sdk.signing.keys import init_keys
from testing.agents import (
    Operator,
    make_bundle,
    matmul_model,
    retained_status,
    start_process,
    store,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker

REPO = Path(__file__).resolve().parent.parent

FEATURES = 256
SIZES = {"1 MB": 1 << 20, "10 MB": 10 << 20}
_TICK = os.sysconf("SC_CLK_TCK")


class EventWatcher:
    """Arrival times of the agent's update events, read off the broker."""

    def __init__(self, broker: Broker, device: str) -> None:
        self._seen: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._client = broker.client()
        self._client.on_message = self._on_message
        self._client.subscribe(Topics("edge", "default").events(device), qos=1)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self._lock:
            self._seen.append((time.perf_counter(), json.loads(msg.payload)))

    def when(self, event: str, version: int, timeout: float = 120.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for moment, e in self._seen:
                    if e["event"] == event and e["version"] == version:
                        return moment
                    if e["event"] == "error" and e["version"] == version:
                        raise RuntimeError(f"update to v{version} failed: {e['reason']}")
            time.sleep(0.002)
        raise TimeoutError(f"no {event} for v{version}")


def raw_transfer(broker: Broker, chunks: list[bytes], tag: str) -> float:
    """Seconds for a connected subscriber to receive ``chunks`` (retained) from the broker."""
    publisher = broker.client()
    for i, data in enumerate(chunks):
        publisher.publish(f"bench/raw/{tag}/{i}", data, qos=1, retain=True).wait_for_publish()
    publisher.disconnect()
    publisher.loop_stop()
    done = threading.Event()
    received = [0]

    def on_message(_c: Any, _u: Any, _msg: Any) -> None:
        received[0] += 1
        if received[0] == len(chunks):
            done.set()

    subscriber = broker.client()
    subscriber.on_message = on_message
    start = time.perf_counter()
    subscriber.subscribe(f"bench/raw/{tag}/#", qos=1)
    if not done.wait(60):
        raise TimeoutError("raw transfer did not finish")
    elapsed = time.perf_counter() - start
    subscriber.disconnect()
    subscriber.loop_stop()
    return elapsed


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory, and its two parts: anonymous (heap, the real cost) and file-backed
    (mapped library code, which the kernel shares between processes and can drop)."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            found[key] = int(value.split()[0]) / 1024
    return found


BARE = """
import sys, time, numpy as np, onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
meta = session.get_inputs()[0]
session.run(None, {meta.name: np.zeros((1, *meta.shape[1:]), np.float32)})
print("ready", flush=True)
time.sleep(3600)
"""


def idle_cost(agent_pid: int, model: Path, seconds: float) -> dict[str, float]:
    bare = subprocess.Popen(
        [sys.executable, "-c", BARE, str(model)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert bare.stdout is not None and bare.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        start = time.monotonic()
        cpu0 = {p: cpu_seconds(p) for p in (agent_pid, bare.pid)}
        time.sleep(seconds)
        wall = time.monotonic() - start
        cpu = {p: 100 * (cpu_seconds(p) - cpu0[p]) / wall for p in cpu0}
        agent_memory, bare_memory = memory_mb(agent_pid), memory_mb(bare.pid)
        return {
            **{f"agent_{k}": v for k, v in agent_memory.items()},
            **{f"bare_{k}": v for k, v in bare_memory.items()},
            "agent_cpu_pct": cpu[agent_pid],
            "bare_cpu_pct": cpu[bare.pid],
        }
    finally:
        bare.kill()
        bare.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    keyring = work / "keys"
    init_keys(keyring, online_keys=1, threshold=1)
    broker = Broker(work / "broker")
    broker.start()
    operator = Operator(keyring, work / "repo", broker)
    config = write_config(work / "dev", broker, keyring / "root.json", probation_s=0.0)
    agent = start_process(config, work / "agent.log")
    watcher = EventWatcher(broker, "dev-1")
    version = 0
    rows: dict[str, dict[str, list[float]]] = {
        k: {"raw": [], "serving": [], "committed": []} for k in SIZES
    }
    try:
        for rnd in range(args.rounds):
            for label, size in SIZES.items():
                version += 1
                bundle = make_bundle(
                    keyring,
                    version,
                    artifact=matmul_model(FEATURES, size // (4 * FEATURES), seed=version),
                )
                operator.publish(bundle)
                chunks = list(operator.repository().chunks_of(bundle).values())
                rows[label]["raw"].append(raw_transfer(broker, chunks, f"{rnd}-{label[:-3]}"))
                start = time.perf_counter()
                operator.assign(version)
                rows[label]["serving"].append(watcher.when("switched", version) - start)
                rows[label]["committed"].append(watcher.when("probation_passed", version) - start)

        # A retrained head: the same 10 MB model with the last 1000 weights changed.
        base_seed = version
        version += 1
        outputs = SIZES["10 MB"] // (4 * FEATURES)
        small_change = make_bundle(
            keyring, version, artifact=matmul_model(FEATURES, outputs, seed=base_seed, change=1000)
        )
        operator.publish(small_change)
        start = time.perf_counter()
        operator.assign(version)
        delta_serving = watcher.when("switched", version) - start
        watcher.when("probation_passed", version)
        wait_for(
            lambda: (
                (retained_status(broker) or {}).get("models", {}).get("digits", {}).get("version")
                == version
            )
        )
        status = retained_status(broker)
        assert status is not None
        transfer = status["models"]["digits"]["last_transfer"]
        total = sum(len(f) for f in small_change.signed_files().values())

        model_path = store(config).version_dir(version) / "model.onnx"
        idle = idle_cost(agent.pid, model_path, args.idle_seconds)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        broker.close()

    report(args.rounds, rows, transfer, total, delta_serving, idle)


def report(
    rounds: int,
    rows: dict[str, dict[str, list[float]]],
    transfer: dict[str, int],
    total: int,
    delta_serving: float,
    idle: dict[str, float],
) -> None:
    print(f"# Agent delivery ({rounds} rounds, medians; one Mosquitto on loopback)\n")
    print("| bundle | raw s | agent serving s | agent committed s | serving/raw | committed/raw |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in rows.items():
        raw, serving, done = (statistics.median(r[k]) for k in ("raw", "serving", "committed"))
        print(
            f"| {label} | {raw:.3f} | {serving:.3f} | {done:.3f} "
            f"| {serving / raw:.1f}x | {done / raw:.1f}x |"
        )
    full_10 = statistics.median(rows["10 MB"]["serving"])
    fetched = transfer["fetched_bytes"]
    print("\n| second 10 MB version (1000 of 2.6M weights changed) | value |")
    print("|---|---:|")
    print(
        f"| chunks fetched / reused / total | {transfer['fetched']} / {transfer['reused']} "
        f"/ {transfer['chunks']} |"
    )
    share = 100 * fetched / total
    print(f"| bytes fetched / bundle bytes | {fetched:,} / {total:,} ({share:.1f}%) |")
    print(f"| update time vs a full 10 MB update | {delta_serving / full_10:.2f}x |")
    print("\n| idle, one 10 MB model loaded | agent | bare onnxruntime process | overhead |")
    print("|---|---:|---:|---:|")
    for key, label in (
        ("VmRSS", "RSS MB"),
        ("RssAnon", "of which heap (anonymous) MB"),
        ("RssFile", "of which mapped files (libraries) MB"),
    ):
        a, b = idle[f"agent_{key}"], idle[f"bare_{key}"]
        print(f"| {label} | {a:.1f} | {b:.1f} | {a - b:+.1f} |")
    a, b = idle["agent_cpu_pct"], idle["bare_cpu_pct"]
    print(f"| CPU % of one core | {a:.2f} | {b:.2f} | {a - b:+.2f} |")


if __name__ == "__main__":
    main()

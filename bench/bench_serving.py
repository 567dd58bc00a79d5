"""Serving benchmark on the digits model, in one run:

1. The agent's binary predict path (a real agent process; .npz in and out, keep-alive).
2. The common tutorial way: a Flask app that parses a JSON list into numpy and calls
   ``InferenceSession.run`` (Flask's threaded server, in its own process).
3. A bare in-process ``InferenceSession.run``: the floor.
4. The agent under the same load while it swaps to a new version: failures and p99.

Both HTTP servers face the same load generator (the same threads and connections), rounds
alternate between them, and every figure is also given as a ratio, because this machine is
shared. Run: ``python bench/bench_serving.py`` (needs mosquitto; about a minute).
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_sdk.client import InferenceClient  # noqa: E402
from edge_sdk.keys import init_keys  # noqa: E402
from tests.agent.support import (  # noqa: E402
    DIGITS,
    Operator,
    committed,
    make_bundle,
    padded_model,
    start_process,
    wait_for,
    write_config,
)
from tests.mosquitto import Broker, free_port  # noqa: E402

SAMPLE = np.load(DIGITS / "validation.npz")["input"][:1].astype(np.float32)

FLASK_APP = """
import sys
import numpy as np, onnxruntime as ort
from flask import Flask, jsonify, request
app = Flask(__name__)
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
@app.post("/predict")
def predict():
    x = np.array(request.get_json()["input"], dtype=np.float32)
    return jsonify({"logits": session.run(None, {"input": x})[0].tolist()})
app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
"""

Call = Callable[[], None]
BATCHED = "agent, binary, dynamic batching (1 ms)"


def agent_caller() -> Callable[[str], Call]:
    def make(url: str) -> Call:
        client = InferenceClient(url)
        return lambda: _check(
            next(iter(client.predict("digits", {"input": SAMPLE}).outputs.values()))
        )

    return make


def flask_caller(port: int) -> Call:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"input": SAMPLE.tolist()})

    def call() -> None:
        connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"flask answered {response.status}")
        _check(np.asarray(json.loads(data)["logits"]))

    return call


def _check(logits: np.ndarray) -> None:
    if logits.shape != (1, 10):
        raise RuntimeError(f"bad answer shape {logits.shape}")


def run_load(callers: list[Call], seconds: float) -> tuple[float, list[float], int]:
    """Requests per second, every latency (ms), failures: one thread per caller."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def worker(call: Call) -> None:
        mine: list[float] = []
        while not stop.is_set():
            start = time.perf_counter()
            try:
                call()
            except Exception:  # a failure is a figure here
                with lock:
                    failures[0] += 1
                continue
            mine.append((time.perf_counter() - start) * 1e3)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(c,)) for c in callers]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies, failures[0]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    keyring = work / "keys"
    init_keys(keyring, online_keys=1, threshold=1)
    broker = Broker(work / "broker")
    broker.start()
    operator = Operator(keyring, work / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    api_port, batch_port, flask_port = free_port(), free_port(), free_port()
    config = write_config(
        work / "dev",
        broker,
        keyring / "root.json",
        probation_s=1.0,
        serving={"listen": f"127.0.0.1:{api_port}", "threads": 2},
    )
    batching_config = write_config(
        work / "dev-2",
        broker,
        keyring / "root.json",
        device="dev-2",
        probation_s=1.0,
        serving={"listen": f"127.0.0.1:{batch_port}", "threads": 2},
        models={"batch_window_ms": 1.0, "max_batch": 32},
    )
    agent = start_process(config, work / "agent.log")
    batching_agent = start_process(batching_config, work / "agent-2.log")
    flask = subprocess.Popen(
        [sys.executable, "-c", FLASK_APP, str(DIGITS / "model.onnx"), str(flask_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{api_port}"
    rows: dict[str, dict[str, list[float]]] = {}
    try:
        for port in (api_port, batch_port, flask_port):
            wait_port(port)
        operator.assign(1)
        operator.assign(1, device="dev-2")
        wait_for(committed(config, 1), timeout=60)
        wait_for(committed(batching_config, 1), timeout=60)
        batch_url = f"http://127.0.0.1:{batch_port}"
        # Every path runs the model with one intra-op thread, as the agent's [[models]] default.
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(
            str(DIGITS / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )

        def bare() -> None:
            _check(session.run(None, {"input": SAMPLE})[0])

        make_agent = agent_caller()
        for _ in range(args.rounds):
            for name, callers_of in (
                ("agent, binary (.npy)", lambda n: [make_agent(url) for _ in range(n)]),
                (BATCHED, lambda n: [make_agent(batch_url) for _ in range(n)]),
                ("Flask + JSON", lambda n: [flask_caller(flask_port) for _ in range(n)]),
                ("bare InferenceSession.run", lambda n: [bare for _ in range(n)]),
            ):
                for mode, n in (("load", args.clients), ("one client", 1)):
                    rps, lat, fail = run_load(callers_of(n), args.seconds)
                    row = rows.setdefault(
                        f"{name}|{mode}", {"rps": [], "p50": [], "p99": [], "fail": []}
                    )
                    row["rps"].append(rps)
                    row["p50"].append(pct(lat, 50))
                    row["p99"].append(pct(lat, 99))
                    row["fail"].append(fail)

        # The agent under load while it installs and swaps to v2 (same weights, new file).
        operator.publish(make_bundle(keyring, 2, artifact=padded_model(1 << 20, seed=3)))
        swap: dict[str, float] = {}

        def swap_soon() -> None:
            time.sleep(1.0)
            operator.assign(2)

        trigger = threading.Thread(target=swap_soon)
        trigger.start()
        rps, lat, fail = run_load([make_agent(url) for _ in range(args.clients)], 6.0)
        trigger.join()
        wait_for(committed(config, 2), timeout=60)
        swap = {"rps": rps, "p50": pct(lat, 50), "p99": pct(lat, 99), "fail": fail, "n": len(lat)}
    finally:
        for process in (agent, batching_agent):
            process.send_signal(signal.SIGTERM)
            process.wait(15)
        flask.terminate()
        flask.wait(10)
        broker.close()
    report(rows, swap, args)


def report(
    rows: dict[str, dict[str, list[float]]], swap: dict[str, float], args: argparse.Namespace
) -> None:
    med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in rows.items()}
    n = args.clients
    print(f"# Serving the digits model ({args.rounds} rounds of {args.seconds:g} s, medians)\n")
    print(f"| path | req/s, {n} clients | p50 ms | p99 ms | req/s, 1 client | p50 ms | failed |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ("agent, binary (.npy)", BATCHED, "Flask + JSON", "bare InferenceSession.run"):
        a, b = med[f"{name}|load"], med[f"{name}|one client"]
        fails = int(sum(rows[f"{name}|load"]["fail"]) + sum(rows[f"{name}|one client"]["fail"]))
        print(
            f"| {name} | {a['rps']:.0f} | {a['p50']:.3f} | {a['p99']:.3f} | {b['rps']:.0f} "
            f"| {b['p50']:.3f} | {fails} |"
        )
    agent, flask = med["agent, binary (.npy)|load"], med["Flask + JSON|load"]
    overhead = med["agent, binary (.npy)|one client"]["p50"]
    overhead -= med["bare InferenceSession.run|one client"]["p50"]
    print("\n| figure | value |")
    print("|---|---:|")
    batched = med[f"{BATCHED}|load"]
    print(f"| agent throughput vs Flask + JSON, {n} clients | {agent['rps'] / flask['rps']:.2f}x |")
    print(
        f"| with dynamic batching vs Flask + JSON, {n} clients "
        f"| {batched['rps'] / flask['rps']:.2f}x |"
    )
    print(f"| agent p50 overhead over the in-process call, 1 client | {overhead:.3f} ms |")
    print(f"| swap under load: requests / failed | {swap['n']:.0f} / {swap['fail']:.0f} |")
    print(f"| swap under load: p50 / p99 ms | {swap['p50']:.3f} / {swap['p99']:.3f} |")
    print(f"| steady load: p99 ms | {agent['p99']:.3f} |")


if __name__ == "__main__":
    main()

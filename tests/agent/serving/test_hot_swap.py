"""Swaps under load: no request fails or gets a half-loaded answer while versions change, memory
does not grow over many swaps, and a version whose latency breaks probation is rolled back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
from prometheus_client.parser import text_string_to_metric_families

from agent.sysinfo import release_memory, rss_bytes
from agent.update.machine import State
from edge_sdk.client import InferenceClient
from testing.agents import (
    DIGITS,
    SAMPLES,
    committed,
    make_bundle,
    matmul_model,
    padded_model,
    retained_status,
    serving_v1,
    store,
    wait_for,
)
from testing.mosquitto import Broker

Answer = tuple[int, np.ndarray]


@contextmanager
def load(
    url: str, model: str, inputs: dict[str, np.ndarray], workers: int = 4
) -> Iterator[tuple[list[Answer], list[BaseException]]]:
    """Concurrent clients predicting in a loop until the block ends."""
    answers: list[Answer] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        with InferenceClient(url) as client:
            while not stop.is_set():
                try:
                    p = client.predict(model, inputs)
                    answers.append((p.version, next(iter(p.outputs.values()))))
                except BaseException as e:  # every failure is the test's business
                    failures.append(e)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    try:
        yield answers, failures
    finally:
        stop.set()
        for t in threads:
            t.join(10)


def test_a_swap_under_concurrent_load_fails_no_request(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    session = ort.InferenceSession(
        padded_model(1 << 20, seed=5), providers=["CPUExecutionProvider"]
    )
    want = np.asarray(session.run(None, {"input": SAMPLES[:2]})[0])
    with serving_v1(tmp_path, broker, keyring) as (agent, url, operator, config):
        # v2 answers exactly as v1 (same weights, a bigger file): any wrong answer would be a
        # half-loaded or mixed-up model, not a new one.
        operator.publish(make_bundle(keyring, 2, artifact=padded_model(1 << 20, seed=5)))
        with load(url, "digits", {"input": SAMPLES[:2]}) as (answers, failures):
            wait_for(lambda: len(answers) > 50)
            operator.assign(2)
            wait_for(committed(config, 2))
            seen = len(answers)
            wait_for(lambda: len(answers) > seen + 50)
    assert failures == []
    versions = [v for v, _ in answers]
    assert {1, 2} <= set(versions), "the load did not span the swap"
    for _, output in answers:
        np.testing.assert_allclose(output, want, rtol=1e-5, atol=1e-5)
    assert versions[-1] == 2 and agent.updaters["digits"].slot.version == 2


def test_memory_does_not_grow_over_many_swaps(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    artifact = padded_model(2 << 20, seed=6)  # each swap loads 6.6 MB of weights
    # Every version is the same model; under the test's own load the p95 of two identical
    # versions can differ by 1.5x and the health gate would (rightly, by its rule) roll one
    # back. This test is about memory, so the latency ratio is out of the way here.
    loose = {"max_latency_ratio": 1000.0}
    with serving_v1(tmp_path, broker, keyring, probation_s=0.0, probation=loose) as (
        _,
        url,
        operator,
        config,
    ):

        def swap_to(version: int) -> None:
            operator.publish(make_bundle(keyring, version, artifact=artifact))
            operator.assign(version)
            wait_for(committed(config, version))

        with load(url, "digits", {"input": SAMPLES[:1]}, workers=2) as (_, failures):
            for version in range(2, 6):  # warm up: allocator pools, caches, imports
                swap_to(version)
            release_memory()
            before = rss_bytes()
            for version in range(6, 16):
                swap_to(version)
            release_memory()
            after = rss_bytes()
    assert failures == []
    # Ten more swaps of a 6.6 MB model: a leaked session per swap would add 60+ MB.
    assert after - before < 25 * 2**20, f"grew {(after - before) / 2**20:.1f} MB over 10 swaps"


def slow_model(features: int = 256, width: int = 1024, depth: int = 6) -> bytes:
    """The same interface as ``matmul_model(features, 10)``, many times the arithmetic."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, previous, size = [], [], "input", features
    for i in range(depth):
        w = (rng.standard_normal((size, width)) / np.sqrt(size)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [previous, f"w{i}"], [f"h{i}"]))
        previous, size = f"h{i}", width
    inits.append(numpy_helper.from_array(rng.standard_normal((size, 10)).astype(np.float32), "out"))
    nodes.append(helper.make_node("MatMul", [previous, "out"], ["output"]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_a_version_that_breaks_probation_latency_is_rolled_back(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    fast = make_bundle(keyring, 1, artifact=matmul_model(256, 10, seed=1))
    rules = {"min_requests": 20, "max_latency_ratio": 1.5, "max_error_rate": 0.01}
    features = {"input": np.random.default_rng(2).standard_normal((1, 256)).astype(np.float32)}
    with serving_v1(tmp_path, broker, keyring, v1=fast, probation=rules, probation_s=2.0) as (
        agent,
        url,
        operator,
        config,
    ):
        operator.publish(make_bundle(keyring, 2, artifact=slow_model()))
        digits = agent.updaters["digits"]
        with load(url, "digits", features, workers=2) as (answers, failures):
            wait_for(lambda: len(answers) > 100)  # v1's figures: the bar v2 is held to
            operator.assign(2)
            wait_for(lambda: digits.journal.state is State.ROLLED_BACK, timeout=60)
        assert failures == []
        assert store(config).current() == 1 and digits.slot.version == 1
        reason = digits.journal.reason
        assert "probation of v2 failed: latency p95" in reason and "previous version" in reason
        # The fleet sees why: the rollback and its reason are in the device's status.
        wait_for(lambda: "latency p95" in str(retained_status(broker)))


def test_dynamic_batching_merges_concurrent_requests_and_splits_answers(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    batching = {"batch_window_ms": 5.0, "max_batch": 16}
    with serving_v1(tmp_path, broker, keyring, models=batching) as (_, url, _, _):
        per_client = [SAMPLES[i : i + 1] for i in range(8)]
        session = ort.InferenceSession(
            str(DIGITS / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        want = [np.asarray(session.run(None, {"input": x})[0]) for x in per_client]
        answers: list[list[np.ndarray]] = [[] for _ in per_client]
        failures: list[BaseException] = []

        def client(i: int) -> None:
            with InferenceClient(url) as c:
                for _ in range(30):
                    try:
                        answers[i].append(
                            c.predict("digits", {"input": per_client[i]}).outputs["logits"]
                        )
                    except BaseException as e:
                        failures.append(e)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(per_client))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        with InferenceClient(url) as c:
            text = c.metrics()
    assert failures == []
    for got, expected_output in zip(answers, want, strict=True):
        assert len(got) == 30
        for output in got:  # each request got its own slice back, not a neighbour's
            np.testing.assert_allclose(output, expected_output, rtol=1e-5, atol=1e-5)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {s.name: s.value for s in families["edge_agent_batch_size"].samples}
    calls, merged = samples["edge_agent_batch_size_count"], samples["edge_agent_batch_size_sum"]
    assert merged == 8 * 30 and calls < merged  # fewer runtime calls than requests

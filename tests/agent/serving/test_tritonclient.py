"""The real Open Inference Protocol clients drive the agent unchanged: tritonclient[http] on
the v2 HTTP routes and tritonclient[grpc] on the gRPC service, liveness, readiness, metadata,
infer with JSON and binary data, the errors of a bad shape or an unknown model, the caps; a
hot swap under load on both protocols fails no request; a real agent process serves gRPC and
stops it when it stops."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from agent.daemon import Agent
from testing.agents import (
    SAMPLES,
    Operator,
    committed,
    make_bundle,
    padded_model,
    serving_v1,
    start_process,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker, free_port
from tests.agent.serving.test_grpc_server import expected

Client = Any  # tritonclient.http or .grpc InferenceServerClient: the same methods


def inputs(module: Any, array: np.ndarray, *, binary: bool = True) -> list[Any]:
    tensor = module.InferInput("input", list(array.shape), "FP32")
    if module is thttp:
        tensor.set_data_from_numpy(array, binary_data=binary)
    else:
        tensor.set_data_from_numpy(array)
    return [tensor]


def grpc_port(agent: Agent) -> int:
    wait_for(lambda: bool(agent.grpc_servers) and agent.grpc_servers[0].started)
    return agent.grpc_servers[0].bound_port


@contextmanager
def clients(agent: Agent, url: str) -> Iterator[dict[str, tuple[Any, Client]]]:
    http = thttp.InferenceServerClient(url.removeprefix("http://"))
    grpc = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port(agent)}")
    try:
        yield {"http": (thttp, http), "grpc": (tgrpc, grpc)}
    finally:
        http.close()
        grpc.close()


def infer_error(module: Any, client: Client, model: str, array: np.ndarray) -> str:
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, inputs(module, array))
    return str(info.value)


def test_tritonclient_http_and_grpc_drive_the_agent(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    with (
        serving_v1(tmp_path, broker, keyring, grpc_listen="127.0.0.1:0", max_samples=16) as (
            agent,
            url,
            _,
            _,
        ),
        clients(agent, url) as both,
    ):
        for protocol, (module, client) in both.items():
            assert client.is_server_live() and client.is_server_ready(), protocol
            assert client.is_model_ready("digits") and client.is_model_ready("digits", "1.0.1")
            assert not client.is_model_ready("digits", "3.0.0"), protocol
            meta = client.get_model_metadata("digits")
            versions = meta["versions"] if protocol == "http" else list(meta.versions)
            assert versions == ["1.0.1"], protocol
            assert client.get_server_metadata() is not None
            for binary in (True, False):  # binary data and JSON (gRPC: raw contents)
                result = client.infer(
                    "digits",
                    inputs(module, SAMPLES, binary=binary),
                    outputs=[module.InferRequestedOutput("logits")],
                )
                np.testing.assert_allclose(
                    result.as_numpy("logits"), expected(SAMPLES), rtol=1e-5, atol=1e-5
                )
            shape = infer_error(module, client, "digits", SAMPLES.reshape(8, 64))
            assert "shape [8, 64]" in shape, (protocol, shape)
            unknown = infer_error(module, client, "nope", SAMPLES)
            assert "no model 'nope'" in unknown, (protocol, unknown)
            many = np.zeros((17, 1, 8, 8), np.float32)  # over max_samples = 16
            cap = infer_error(module, client, "digits", many)
            assert "serving.max_samples" in cap, (protocol, cap)
        assert "NOT_FOUND" in unknown and "RESOURCE_EXHAUSTED" in cap  # gRPC's status codes


@contextmanager
def load(
    make: Callable[[], tuple[Any, Client]], workers: int
) -> Iterator[tuple[list[tuple[str, np.ndarray]], list[BaseException]]]:
    answers: list[tuple[str, np.ndarray]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        module, client = make()
        try:
            while not stop.is_set():
                try:
                    result = client.infer("digits", inputs(module, SAMPLES[:2]))
                    version = result.get_response()
                    label = version["model_version"] if module is thttp else version.model_version
                    answers.append((label, result.as_numpy("logits")))
                except BaseException as e:  # every failure is the test's business
                    failures.append(e)
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    try:
        yield answers, failures
    finally:
        stop.set()
        for t in threads:
            t.join(10)


def test_a_swap_under_load_on_both_protocols_fails_no_request(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    session = ort.InferenceSession(
        padded_model(1 << 20, seed=5), providers=["CPUExecutionProvider"]
    )
    want = np.asarray(session.run(None, {"input": SAMPLES[:2]})[0])
    v1 = make_bundle(keyring, 1, artifact=padded_model(1 << 20, seed=5))
    with serving_v1(tmp_path, broker, keyring, v1=v1, grpc_listen="127.0.0.1:0") as (
        agent,
        url,
        operator,
        config,
    ):
        port = grpc_port(agent)
        operator.publish(make_bundle(keyring, 2, artifact=padded_model(1 << 20, seed=5)))
        with (
            load(lambda: (thttp, thttp.InferenceServerClient(url.removeprefix("http://"))), 2) as (
                http_answers,
                http_failures,
            ),
            load(lambda: (tgrpc, tgrpc.InferenceServerClient(f"127.0.0.1:{port}")), 2) as (
                grpc_answers,
                grpc_failures,
            ),
        ):
            wait_for(lambda: len(http_answers) > 30 and len(grpc_answers) > 30)
            operator.assign(2)
            wait_for(committed(config, 2))
            seen = len(http_answers), len(grpc_answers)
            wait_for(lambda: len(http_answers) > seen[0] + 30 and len(grpc_answers) > seen[1] + 30)
    assert http_failures == [] and grpc_failures == []
    for answers in (http_answers, grpc_answers):
        assert {"1.0.1", "1.0.2"} <= {v for v, _ in answers}, "the load did not span the swap"
        assert answers[-1][0] == "1.0.2"
        for _, output in answers:
            np.testing.assert_allclose(output, want, rtol=1e-5, atol=1e-5)


def test_an_agent_process_serves_grpc_on_a_unix_socket_and_stops_it(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    port, sock = free_port(), tmp_path / "grpc.sock"
    config = write_config(
        tmp_path / "dev",
        broker,
        keyring / "root.json",
        serving={"grpc_listen": f"127.0.0.1:{port}", "grpc_unix_socket": str(sock)},
    )
    process = start_process(config, tmp_path / "agent.log")
    try:
        operator.assign(1)
        wait_for(committed(config, 1), timeout=60)
        for address in (f"127.0.0.1:{port}", f"unix:{sock}"):
            with tgrpc.InferenceServerClient(address) as client:
                wait_for(client.is_server_ready, what=f"gRPC ready on {address}")
                result = client.infer("digits", inputs(tgrpc, SAMPLES))
                np.testing.assert_allclose(
                    result.as_numpy("logits"), expected(SAMPLES), rtol=1e-5, atol=1e-5
                )
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(90)  # a loaded CI machine: shutdown waits on the broker and servers
    assert code == 0, (tmp_path / "agent.log").read_text()[-2000:]
    with socket.socket() as probe:  # nothing listens on the port once the agent is gone
        assert probe.connect_ex(("127.0.0.1", port)) != 0

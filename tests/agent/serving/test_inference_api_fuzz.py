"""The inference API under hostile and unlucky requests (issue 11, classes 9 to 11): the real
ASGI app on a real loaded model, called directly for thousands of fuzzed requests and through
a real uvicorn socket for the rest. Every answer is a 2xx or a 4xx with one line, nothing is
logged with a traceback, memory stays bounded, a request head is capped as it arrives, a big
body never stalls ``/healthz``, and the model still answers exactly afterwards."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import logging
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from agent.metrics import Metrics
from agent.serving import codec
from agent.serving.http_server import ApiServer
from agent.serving.inference_api import InferenceApi
from agent.serving.slots import ServingSlot
from agent.update.selftest import LoadedVersion, gate
from edge_sdk.core import npy
from testing.agents import DIGITS, SAMPLES, make_bundle
from tests.agent.serving.test_codec_fuzz import _inflating_npz
from tests.fuzz import mutations

PREDICT = "/v1/models/digits/predict"
LIMITS = codec.Limits(max_samples=64, max_decoded_bytes=1 << 20)


@pytest.fixture(scope="module")
def loaded(signing_keys: Path) -> LoadedVersion:
    version = gate(make_bundle(signing_keys, 1), threads=1, memory_budget_mb=1e6, max_latency_ms=0)
    assert version.gate.passed, version.gate.detail
    return version


def expected(batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(DIGITS / "model.onnx"), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": batch})[0])


def make_app(loaded: LoadedVersion, limits: codec.Limits = LIMITS, **kw: Any) -> InferenceApi:
    slot = ServingSlot("digits")
    slot.swap(loaded)
    options: dict[str, Any] = {"max_body_bytes": 200_000, "threads": 1, "limits": limits}
    return InferenceApi({"digits": slot}, Metrics(), **{**options, **kw})


async def call(
    app: InferenceApi, method: str, path: str, body: bytes = b"", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """One request through the ASGI interface, the body in up to three messages."""
    parts = [body[: len(body) // 3], body[len(body) // 3 :]] if len(body) > 2 else [body]
    messages = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
    }
    await app(scope, receive, send)
    start = sent[0]
    assert start["type"] == "http.response.start"
    answer_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], answer_headers, b"".join(m.get("body", b"") for m in sent[1:])


def assert_clean(status: int, headers: dict[str, str], body: bytes) -> None:
    """A 2xx, or a 4xx whose JSON body is one line that says what went wrong."""
    assert 200 <= status < 300 or 400 <= status < 500, (status, body[:300])
    if status >= 400:
        assert headers["content-type"] == codec.JSON
        message = json.loads(body)["error"]
        assert message and "\n" not in message and "Traceback" not in message, message


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


SEEDS = {
    codec.JSON: json.dumps({"inputs": {"input": SAMPLES[:2].tolist()}}).encode(),
    codec.NPZ: npz(input=SAMPLES[:3]),
    codec.NPY: npy.dumps(SAMPLES[:2]),
    codec.OCTET: npy.dumps(SAMPLES[:1]),
}


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad[:5]]


@pytest.mark.parametrize("content_type", list(SEEDS))
def test_fuzzed_predict_bodies_through_the_app_are_a_2xx_or_a_4xx(
    loaded: LoadedVersion, content_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    """About a thousand mutants of a valid body per content type, each sent as what it claims
    to be and as every other type the API accepts: never a 5xx, never a traceback, memory
    bounded, and the model answers exactly afterwards."""
    app = make_app(loaded)
    seeds = [SEEDS[content_type], *SEEDS.values()]
    statuses: dict[int, int] = {}

    async def run() -> float:
        tracemalloc.start()
        try:
            for i, case in enumerate(mutations(seed=len(content_type), seeds=seeds, count=1000)):
                claimed = content_type if i % 2 else list(SEEDS)[i // 2 % len(SEEDS)]
                status, headers, body = await call(
                    app, "POST", PREDICT, case, **{"Content-Type": claimed}
                )
                assert_clean(status, headers, body)
                statuses[status] = statuses.get(status, 0) + 1
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    caplog.set_level(logging.INFO)
    try:
        peak = asyncio.run(run())
        status, _, body = asyncio.run(
            call(app, "POST", PREDICT, npz(input=SAMPLES), **{"Content-Type": codec.NPZ})
        )
    finally:
        app.close()
    no_tracebacks(caplog)
    assert statuses.get(200, 0) > 0 and statuses.get(400, 0) > 0, statuses
    assert peak < 4 * LIMITS.max_decoded_bytes + (16 << 20), peak
    assert status == 200
    outputs = json.loads(body)["outputs"]["logits"]
    np.testing.assert_allclose(outputs, expected(SAMPLES), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Length": "²"}, 400),
        ({"Content-Length": "9" * 5000}, 413),
        ({"Content-Length": "-1"}, 400),
        ({"Content-Type": "application/x-npy; charset=\x00"}, 200),
        ({"Content-Type": "\xff" * 100}, 415),
        (
            {"Content-Type": codec.NPY, "Accept": "application/x-npy, */*;q=" + "9" * 400},
            200,
        ),
    ],
)
def test_odd_headers_are_a_2xx_or_a_4xx(
    loaded: LoadedVersion, headers: dict[str, str], status: int
) -> None:
    app = make_app(loaded)
    try:
        got = asyncio.run(call(app, "POST", PREDICT, npy.dumps(SAMPLES[:1]), **headers))
    finally:
        app.close()
    assert_clean(*got)
    assert got[0] == status


def test_odd_paths_and_methods_are_a_4xx(loaded: LoadedVersion) -> None:
    app = make_app(loaded)
    paths = ["/v1/models/" + "x" * 10_000, "/v1/models//predict", "/\x00", "/v1/models/%ff"]
    try:
        for path in paths:
            for method in ("GET", "POST", "PATCH"):
                assert_clean(*asyncio.run(call(app, method, path, b"{}")))
    finally:
        app.close()


@pytest.fixture()
def server(loaded: LoadedVersion) -> Iterator[ApiServer]:
    big = codec.Limits(max_samples=1 << 20, max_decoded_bytes=64 << 20)
    api = ApiServer(
        make_app(loaded, big, max_body_bytes=1 << 20, threads=2),
        "127.0.0.1",
        0,
        max_header_bytes=8 << 10,
    )
    api.start()
    try:
        yield api
    finally:
        api.stop()


def request(
    port: int, method: str, path: str, body: bytes = b"", **headers: str
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_fuzzed_requests_over_a_real_socket(
    server: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Mutated predict bodies and mutated raw HTTP requests through uvicorn itself: a 2xx, a
    4xx, or a closed connection; never a 5xx."""
    caplog.set_level(logging.INFO)
    port = server.bound_port
    for i, case in enumerate(mutations(seed=5, seeds=list(SEEDS.values()), count=200)):
        content_type = list(SEEDS)[i % len(SEEDS)]
        status, _ = request(port, "POST", PREDICT, case, **{"Content-Type": content_type})
        assert status < 500, status
    raw = (
        b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy"
        b"\r\nContent-Length: " + str(len(SEEDS[codec.NPY])).encode() + b"\r\n\r\n"
    ) + SEEDS[codec.NPY]
    statuses = []
    for case in mutations(seed=6, seeds=[raw], count=200):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(case)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        if answer:
            statuses.append(int(answer.split(b" ", 2)[1]))
    assert statuses and all(s < 500 for s in statuses), statuses
    no_tracebacks(caplog)
    status, body = request(
        port, "POST", PREDICT, npz(input=SAMPLES), Accept=codec.NPZ, **{"Content-Type": codec.NPZ}
    )
    assert status == 200
    with np.load(io.BytesIO(body)) as archive:
        np.testing.assert_allclose(archive["logits"], expected(SAMPLES), rtol=1e-5, atol=1e-5)


def test_a_64_mib_header_is_refused_without_being_read_whole(server: ApiServer) -> None:
    """The client streams a header of 64 MiB; the server answers 431 once the head passes its
    cap and closes the connection, long before the header ends, holding no copy of it."""
    block = b"a" * (1 << 20)
    sent = 0
    tracemalloc.start()
    try:
        with socket.create_connection(("127.0.0.1", server.bound_port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            try:
                for _ in range(64):
                    sock.sendall(block)
                    sent += len(block)
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                answer = sock.recv(65536)
            except ConnectionResetError:
                answer = b""  # reset before the answer could be read: still refused
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sent < 64 << 20, "the server read the whole 64 MiB header"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert peak < 8 << 20, peak
    assert request(server.bound_port, "GET", "/healthz")[0] == 200


def test_a_head_under_the_cap_is_served(server: ApiServer) -> None:
    status, _ = request(server.bound_port, "GET", "/healthz", **{"X-Pad": "p" * 7000})
    assert status == 200
    status, _ = request(server.bound_port, "GET", "/healthz", **{"X-Pad": "p" * 9000})
    assert status == 431


def test_big_bodies_do_not_stall_healthz(server: ApiServer) -> None:
    """Six bodies that each inflate 64 MiB (and then fail their CRC: a 400) are decoded in a
    thread of their own; /healthz from another client answers throughout."""
    bomb = _inflating_npz("input", (1 << 18, 1, 8, 8), 64 << 20)
    port = server.bound_port
    results: list[int] = []

    def send_bombs() -> None:
        for _ in range(6):
            results.append(request(port, "POST", PREDICT, bomb, **{"Content-Type": codec.NPZ})[0])

    sender = threading.Thread(target=send_bombs)
    latencies = []
    start = time.monotonic()
    sender.start()
    while sender.is_alive():
        t0 = time.monotonic()
        assert request(port, "GET", "/healthz")[0] == 200
        latencies.append(time.monotonic() - t0)
        time.sleep(0.01)
    took = time.monotonic() - start  # for the message
    sender.join()
    assert results == [400] * 6
    # Decoded on the event loop, each body held /healthz for ~0.35 s here (seven answers in
    # two seconds, the fastest of the five slowest 0.2 s); in a thread, ~100 answers of a few
    # ms. Judged on the median and the 90th percentile: a loaded CI host has outliers.
    latencies.sort()
    median, p90 = latencies[len(latencies) // 2], latencies[len(latencies) * 9 // 10]
    assert len(latencies) >= 20 and median < 0.05 and p90 < 0.15, (median, p90, took)

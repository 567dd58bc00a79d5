"""The local inference API on an installed bundle: predict over HTTP (JSON and binary) and a
Unix socket, every bad request a 4xx with a message, readiness, and Prometheus metrics."""

from __future__ import annotations

import http.client
import io
import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.config import load_config
from agent.metrics import Metrics
from agent.serving.http_server import ApiServer
from agent.serving.inference_api import InferenceApi
from edge_sdk.client import InferenceClient
from edge_sdk.errors import ConfigError, PredictError
from testing.agents import DIGITS, SAMPLES, serving_v1, write_config
from testing.mosquitto import Broker


def expected(batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(DIGITS / "model.onnx"), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": batch})[0])


def raw(url: str, method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, Any]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    kind = response.getheader("content-type", "")
    return response.status, json.loads(data) if kind.startswith("application/json") else data


def test_predict_binary_and_json_agree_with_the_model(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    with serving_v1(tmp_path, broker, keyring) as (_, url, _, _):
        with InferenceClient(url) as client:
            assert client.ready()
            answer = client.predict("digits", {"input": SAMPLES})
            (model,) = client.models()
        status, doc = raw(
            url,
            "POST",
            "/v1/models/digits/predict",
            json.dumps({"inputs": {"input": SAMPLES[:2].tolist()}}).encode(),
            **{"Content-Type": "application/json"},
        )
        status_npz, body_npz = raw(
            url,
            "POST",
            "/v1/models/digits/predict",
            npz(input=SAMPLES[:3]),
            **{"Content-Type": "application/x-npz", "Accept": "application/x-npz"},
        )
    assert answer.version == 1
    np.testing.assert_allclose(answer.outputs["logits"], expected(SAMPLES), rtol=1e-5, atol=1e-5)
    assert status_npz == 200
    with np.load(io.BytesIO(body_npz)) as archive:
        np.testing.assert_allclose(archive["logits"], expected(SAMPLES[:3]), rtol=1e-5, atol=1e-5)
    assert status == 200
    np.testing.assert_allclose(
        doc["outputs"]["logits"], expected(SAMPLES[:2]), rtol=1e-5, atol=1e-5
    )
    assert model["name"] == "digits" and model["version"] == 1
    assert model["inputs"][0]["shape"] == ["batch", 1, 8, 8]


def test_predict_over_a_unix_socket(tmp_path: Path, broker: Broker, keyring: Path) -> None:
    socket_path = tmp_path / "api.sock"
    with (
        serving_v1(tmp_path, broker, keyring, unix_socket=str(socket_path)),
        InferenceClient(unix_socket=str(socket_path)) as client,
    ):
        answer = client.predict("digits", {"input": SAMPLES[:1]})
    assert answer.version == 1 and answer.outputs["logits"].shape == (1, 10)


def npz(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)  # type: ignore[operator]
    return buffer.getvalue()


BAD_REQUESTS = {
    "unknown input name": (npz(image=SAMPLES), "application/x-npz", 422, "unknown input 'image'"),
    "wrong shape": (npz(input=SAMPLES[:, :, :4]), "application/x-npz", 422, "has shape"),
    "wrong dtype": (npz(input=SAMPLES.astype(np.float64)), "application/x-npz", 422, "float64"),
    "no samples": (npz(input=SAMPLES[:0]), "application/x-npz", 422, "no samples"),
    "malformed JSON": (b'{"inputs": [1, 2', "application/json", 400, "not valid JSON"),
    "JSON without inputs": (b'{"x": 1}', "application/json", 400, '{"inputs"'),
    "ragged JSON": (
        json.dumps({"inputs": {"input": [[1.0], [1.0, 2.0]]}}).encode(),
        "application/json",
        422,
        "rectangular",
    ),
    "truncated npz": (npz(input=SAMPLES)[:100], "application/x-npz", 400, "not a readable .npz"),
    "oversized body": (b"x" * 300_000, "application/x-npz", 413, "200000-byte cap"),
    "unsupported type": (b"abc", "text/plain", 415, "not supported"),
    # Issue 11: each of these was a 500 with a traceback, or a memory bomb.
    "npz sent as npy": (
        npz(input=SAMPLES),
        "application/x-npy",
        400,
        "send it as application/x-npz",
    ),
    "JSON nested 5000 deep": (
        b'{"inputs": {"input": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
        "application/json",
        400,
        "nested too deep",
    ),
    "400-digit integer": (
        b'{"inputs": {"input": [[[[' + b"9" * 400 + b"]]]]}}",
        "application/json",
        422,
        "rectangular",
    ),
    "100,000 samples": (
        npz(True, input=np.zeros((100_000, 1, 8, 8), np.float32)),  # 25 kB deflated
        "application/x-npz",
        413,
        "serving.max_samples",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_a_4xx_and_a_message(
    tmp_path: Path, broker: Broker, keyring: Path, case: str
) -> None:
    body, content_type, status, phrase = BAD_REQUESTS[case]
    with serving_v1(tmp_path, broker, keyring) as (agent, url, _, _):
        got, doc = raw(
            url, "POST", "/v1/models/digits/predict", body, **{"Content-Type": content_type}
        )
        assert (got, phrase in doc["error"]) == (status, True), doc
        # Still serving afterwards: a bad request never takes the agent down.
        with InferenceClient(url) as client:
            assert client.predict("digits", {"input": SAMPLES[:1]}).version == 1
        assert agent.updaters["digits"].slot.version == 1


def test_unknown_model_and_wrong_method(tmp_path: Path, broker: Broker, keyring: Path) -> None:
    with serving_v1(tmp_path, broker, keyring) as (_, url, _, _):
        assert raw(url, "POST", "/v1/models/cats/predict", npz(input=SAMPLES))[0] == 404
        assert raw(url, "GET", "/v1/models/digits/predict")[0] == 404
        assert raw(url, "DELETE", "/v1/models/digits")[0] == 405
        assert raw(url, "GET", "/healthz") == (200, {"status": "alive"})
        with InferenceClient(url) as client, pytest.raises(PredictError) as err:
            client.predict("cats", {"input": SAMPLES})
    assert err.value.status == 404 and "no model 'cats'" in str(err.value)


def test_metrics_parse_and_carry_model_and_version(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    with serving_v1(tmp_path, broker, keyring) as (_, url, _, _), InferenceClient(url) as client:
        for _ in range(3):
            client.predict("digits", {"input": SAMPLES[:1]})
        with pytest.raises(PredictError):
            client.predict("digits", {"input": SAMPLES.astype(np.float64)})
        text = client.metrics()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {
        (s.labels["model"], s.labels["version"], s.labels["code"]): s.value
        for s in families["edge_agent_requests"].samples
        if s.name.endswith("_total")
    }
    # The real status code, not its class; the version as its user wrote it (1.0.1), not 1.
    assert requests[("digits", "1.0.1", "200")] == 3
    assert requests[("digits", "1.0.1", "422")] == 1
    latency = [
        s for s in families["edge_agent_inference_seconds"].samples if s.name.endswith("_count")
    ]
    assert latency[0].labels == {"model": "digits", "version": "1.0.1"} and latency[0].value == 3
    whole = [s for s in families["edge_agent_request_seconds"].samples if s.name.endswith("_count")]
    assert whole[0].labels == {"model": "digits", "version": "1.0.1"} and whole[0].value == 4
    names = {s.name for f in families.values() for s in f.samples}
    assert not [n for n in names if n.endswith("_created")]
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= names
    assert "process_open_fds" in names
    (build,) = families["edge_agent_build_info"].samples
    assert build.value == 1 and build.labels["version"]
    states = {s.labels["state"]: s.value for s in families["edge_agent_update_state"].samples}
    assert states["committed"] == 1 and states["downloading"] == 0
    results = {
        s.labels["result"]: s.value
        for s in families["edge_agent_update_results"].samples
        if s.name.endswith("_total")
    }
    assert results["committed"] == 1
    # The version serving: by its label for people, the integer for alerts that compare.
    (serving,) = families["edge_agent_model_serving_info"].samples
    assert serving.labels == {"model": "digits", "version": "1.0.1"} and serving.value == 1
    (number,) = families["edge_agent_model_version"].samples
    assert number.value == 1


def test_the_tcp_listener_turns_nagle_off() -> None:
    """With Nagle on, each response waits ~40 ms for the client's delayed ACK; asyncio only
    disables it on sockets created as TCP, so the listener must say it is one."""
    server = ApiServer(InferenceApi({}, Metrics(), max_body_bytes=1, threads=1), "127.0.0.1", 0)
    sock = server._bind()
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()


def _api(unix_socket: Path) -> ApiServer:
    return ApiServer(
        InferenceApi({}, Metrics(), max_body_bytes=1, threads=1), "", 0, str(unix_socket)
    )


@pytest.mark.parametrize("kind", ["regular file", "directory", "symbolic link"])
def test_a_unix_socket_path_that_is_not_a_socket_is_never_replaced(
    tmp_path: Path, broker: Broker, keyring: Path, kind: str
) -> None:
    """Issue 11, class 9: the agent used to unlink whatever was at serving.unix_socket. A file,
    a directory or a link there is a one-line config error, and it is left as it was."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    path = tmp_path / "api.sock"
    if kind == "regular file":
        path.write_text("keep me")
    elif kind == "directory":
        path.mkdir()
        (path / "inside").write_text("keep me")
    else:
        path.symlink_to(target)
    config = write_config(
        tmp_path / "dev", broker, keyring / "root.json", serving={"unix_socket": str(path)}
    )
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    message = str(refused.value)
    assert "serving.unix_socket" in message and "not a socket" in message
    assert "\n" not in message
    # The server refuses it too (a file put there after the config was read).
    server = _api(path)
    with pytest.raises(OSError, match=f"is a {kind}, not a socket"):
        server.start()
    server.app.close()
    if kind == "directory":
        assert (path / "inside").read_text() == "keep me"
    else:
        assert path.read_text() == "keep me"
    assert target.read_text() == "keep me"


def test_a_stale_socket_is_replaced_and_a_live_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a killed agent's socket: still there, no one listening
    first = _api(path)
    first.start()
    try:
        assert first.started
        second = _api(path)
        with pytest.raises(OSError, match="in use"):
            second.start()
        second.app.close()
        with InferenceClient(unix_socket=str(path)) as client:
            assert client.models() == []  # the first server still answers on it
    finally:
        first.stop()


@pytest.mark.parametrize(
    ("key", "value", "phrase"),
    [
        ("max_samples", 0, "between 1 and"),
        ("max_decoded_bytes", -1, "between 1 and"),
        ("max_header_bytes", 100, "between 1024 and"),
        ("max_samples", "many", "expected an integer"),
    ],
)
def test_request_limits_are_checked_in_the_config(
    tmp_path: Path, broker: Broker, keyring: Path, key: str, value: object, phrase: str
) -> None:
    config = write_config(tmp_path, broker, keyring / "root.json", serving={key: value})
    with pytest.raises(ConfigError, match=f"serving.{key}.*{phrase}"):
        load_config(config)
    good = write_config(tmp_path, broker, keyring / "root.json", serving={key: 2048})
    assert getattr(load_config(good).serving, key) == 2048

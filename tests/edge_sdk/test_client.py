"""The inference client's side of the wire, against a scripted stand-in for the agent's API:
what it sends for /v1 and the Open Inference Protocol, how it reads answers and refusals, the
one reconnect after an idle keep-alive was closed, and the requests it refuses before sending.
The real agent answering this client: tests/agent/serving/test_inference_api*.py."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from edge_sdk.client import InferenceClient
from edge_sdk.core import npy
from edge_sdk.errors import InputError, PredictError

Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Script:
    """What the stand-in answers, in order, and what it was sent."""

    replies: list[Reply]
    seen: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    hang_up: bool = False  # close each connection after its answer, without saying so
    connections: int = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the agent's API
    script: Script

    def setup(self) -> None:
        super().setup()
        self.script.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.script.seen.append((self.path, dict(self.headers.items()), body))
        status, headers, answer = self.script.replies.pop(0)
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(answer))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer)
        self.close_connection = self.script.hang_up

    do_GET = do_POST

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def agent() -> Iterator[tuple[Script, str]]:
    script = Script(replies=[])
    handler = type("Handler", (_Handler,), {"script": script})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield script, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _npy(array: np.ndarray, **headers: str) -> Reply:
    return 200, {"Content-Type": "application/x-npy", **headers}, npy.dumps(array)


def test_v1_sends_one_input_as_npy_and_reads_the_named_output(
    agent: tuple[Script, str],
) -> None:
    script, url = agent
    batch, logits = np.ones((2, 4), np.float32), np.arange(6, dtype=np.float32).reshape(2, 3)
    script.replies.append(_npy(logits, **{"X-Output-Name": "logits", "X-Model-Version": "3"}))
    with InferenceClient(url) as client:
        answer = client.predict("digits", {"input": batch})
    assert answer.version == 3 and list(answer.outputs) == ["logits"]
    np.testing.assert_array_equal(answer.outputs["logits"], logits)
    path, headers, body = script.seen[0]
    assert path == "/v1/models/digits/predict" and headers["Content-Type"] == "application/x-npy"
    np.testing.assert_array_equal(npy.loads(body), batch)


def test_v1_sends_several_inputs_as_npz_and_reads_an_npz_answer(
    agent: tuple[Script, str],
) -> None:
    script, url = agent
    archive = io.BytesIO()
    np.savez(archive, a=np.zeros(2), b=np.ones(3))
    script.replies.append((200, {"Content-Type": "application/x-npz"}, archive.getvalue()))
    with InferenceClient(url) as client:
        answer = client.predict("m", {"x": np.zeros(1), "y": np.ones(1)})
    assert sorted(answer.outputs) == ["a", "b"] and answer.version == 0
    _, headers, body = script.seen[0]
    assert headers["Content-Type"] == "application/x-npz"
    with np.load(io.BytesIO(body)) as sent:
        assert sorted(sent.files) == ["x", "y"]


def test_v2_sends_binary_tensors_and_reads_binary_and_json_outputs(
    agent: tuple[Script, str],
) -> None:
    script, url = agent
    scores = np.array([[0.25, 0.75]], np.float32)
    binary = {"name": "scores", "datatype": "FP32", "shape": [1, 2]}
    outputs = [
        {**binary, "parameters": {"binary_data_size": 8}},
        {"name": "label", "datatype": "INT64", "shape": [1], "data": [1]},  # as JSON
    ]
    head = json.dumps({"model_version": "1.2.0", "outputs": outputs}).encode()
    reply_headers = {"Inference-Header-Content-Length": str(len(head)), "X-Model-Version": "7"}
    script.replies.append((200, reply_headers, head + scores.tobytes()))
    with InferenceClient(url, protocol="v2") as client:
        answer = client.predict(
            "digits/cnn",
            {"input": np.arange(3, dtype=np.int32)},
            version="1.2.0",
            outputs=["scores"],
        )
    assert (answer.version, answer.label) == (7, "1.2.0")
    np.testing.assert_array_equal(answer.outputs["scores"], scores)
    np.testing.assert_array_equal(answer.outputs["label"], [1])
    path, headers, body = script.seen[0]
    assert path == "/v2/models/digits%2Fcnn/versions/1.2.0/infer"  # a name is one path segment
    length = int(headers["Inference-Header-Content-Length"])
    sent = json.loads(body[:length])
    assert sent["inputs"] == [
        {"name": "input", "shape": [3], "datatype": "INT32",
         "parameters": {"binary_data_size": 12}},
    ]  # fmt: skip
    assert sent["outputs"] == [{"name": "scores", "parameters": {"binary_data": True}}]
    assert body[length:] == np.arange(3, dtype="<i4").tobytes()


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_a_refusal_is_a_predict_error_with_the_status_and_the_agents_line(
    agent: tuple[Script, str], protocol: str
) -> None:
    script, url = agent
    script.replies.append((503, {}, json.dumps({"error": "no version installed yet"}).encode()))
    with InferenceClient(url, protocol=protocol) as client, pytest.raises(PredictError) as info:
        client.predict("digits", {"input": np.zeros(1, np.float32)})
    assert info.value.status == 503 and info.value.retryable
    assert str(info.value) == "digits: no version installed yet"


def test_an_idle_connection_the_agent_closed_is_reopened_once(agent: tuple[Script, str]) -> None:
    script, url = agent
    script.replies += [_npy(np.zeros(1)), _npy(np.ones(1))] * 2
    with InferenceClient(url) as client:
        client.predict("m", {"x": np.zeros(1)})
        client.predict("m", {"x": np.zeros(1)})
        assert script.connections == 1  # kept alive
        script.hang_up = True
        client.predict("m", {"x": np.zeros(1)})
        last = client.predict("m", {"x": np.zeros(1)})  # on a connection closed meanwhile
    np.testing.assert_array_equal(last.outputs["output"], np.ones(1))
    assert len(script.seen) == 4 and script.connections == 2


def test_what_the_client_refuses_before_sending() -> None:
    # Nothing listens on port 9: a request sent would fail differently.
    with pytest.raises(InputError, match="protocol 'grpc' must be 'v1' or 'v2'"):
        InferenceClient(protocol="grpc")
    for url in ("https://127.0.0.1:8470", "127.0.0.1:8470", "http://"):
        with pytest.raises(InputError, match="is not http://HOST:PORT"):
            InferenceClient(url)
    with pytest.raises(InputError, match="version and outputs are for protocol='v2'"):
        InferenceClient("http://127.0.0.1:9").predict("m", {"x": np.zeros(1)}, version="2")
    with pytest.raises(InputError, match="input 'x' is complex64: not a protocol datatype"):
        InferenceClient("http://127.0.0.1:9", protocol="v2").predict(
            "m", {"x": np.zeros(1, np.complex64)}
        )

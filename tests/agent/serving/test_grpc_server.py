"""The Open Inference Protocol over gRPC on a real loaded model and a real grpcio server:
tritonclient[grpc] drives it unchanged; typed contents and raw bytes both decode; every bad
request is the status code its HTTP twin's 4xx maps to, with one line; the caps hold; Unix
sockets, an address in use and the config's gRPC keys; the committed protoc module matches its
.proto."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from agent.config import load_config
from agent.daemon import Agent
from agent.metrics import Metrics
from agent.protos import grpc_predict_v2_pb2 as pb
from agent.serving import codec
from agent.serving.grpc_server import GrpcServer
from agent.serving.grpc_service import GrpcInference
from agent.serving.slots import ServingSlot
from agent.update.selftest import LoadedVersion, gate
from edge_sdk.errors import ConfigError
from testing.agents import DIGITS, SAMPLES, make_bundle, write_config
from testing.mosquitto import Broker

LIMITS = codec.Limits(max_samples=64, max_decoded_bytes=1 << 20)
PROTOS = Path(__file__).resolve().parents[3] / "agent" / "protos"


@pytest.fixture(scope="module")
def loaded(signing_keys: Path) -> LoadedVersion:
    version = gate(make_bundle(signing_keys, 1), threads=1, memory_budget_mb=1e6, max_latency_ms=0)
    assert version.gate.passed, version.gate.detail
    return version


def expected(batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(DIGITS / "model.onnx"), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": batch})[0])


def make_server(
    slots: dict[str, ServingSlot],
    limits: codec.Limits = LIMITS,
    metrics: Metrics | None = None,
    **kw: Any,
) -> GrpcServer:
    service = GrpcInference(slots, metrics or Metrics(), threads=1, limits=limits)
    return GrpcServer(service, **{"max_message_bytes": 200_000, **kw})


@pytest.fixture()
def server(loaded: LoadedVersion) -> Iterator[GrpcServer]:
    slot = ServingSlot("digits")
    slot.swap(loaded)
    empty = ServingSlot("empty")  # configured, nothing installed yet
    server = make_server({"digits": slot, "empty": empty})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def client(server: GrpcServer) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(f"127.0.0.1:{server.bound_port}") as c:
        yield c


def raw_call(server: GrpcServer, method: str, body: bytes) -> bytes:
    with grpc.insecure_channel(f"127.0.0.1:{server.bound_port}") as channel:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
        return bytes(call(body, timeout=30))


def refused(server: GrpcServer, method: str, body: bytes) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        raw_call(server, method, body)
    error: Any = info.value
    return error.code(), error.details()


def infer_input(array: np.ndarray, name: str = "input", datatype: str = "FP32") -> Any:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def triton_error(client: triton.InferenceServerClient, *inputs: Any, **kw: Any) -> str:
    with pytest.raises(InferenceServerException) as info:
        client.infer(kw.pop("model", "digits"), list(inputs), **kw)
    return str(info.value)


def test_tritonclient_liveness_readiness_and_metadata(
    client: triton.InferenceServerClient,
) -> None:
    assert client.is_server_live()
    assert not client.is_server_ready()  # "empty" has no version yet
    assert client.is_model_ready("digits")
    assert client.is_model_ready("digits", "1.0.1") and client.is_model_ready("digits", "1")
    assert not client.is_model_ready("digits", "9.9.9")
    assert not client.is_model_ready("empty")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "edge-agent" and "binary_tensor_data" in server["extensions"]
    model = client.get_model_metadata("digits", as_json=True)
    assert model["name"] == "digits" and model["versions"] == ["1.0.1"]
    assert model["platform"] == "onnxruntime_onnx"
    (tensor,) = model["inputs"]
    assert tensor == {"name": "input", "datatype": "FP32", "shape": ["-1", "1", "8", "8"]}
    assert model["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": ["-1", "10"]}]


def test_tritonclient_infer_agrees_with_the_model(client: triton.InferenceServerClient) -> None:
    result = client.infer(
        "digits",
        [infer_input(SAMPLES)],
        outputs=[triton.InferRequestedOutput("logits")],
        request_id="r-7",
    )
    np.testing.assert_allclose(result.as_numpy("logits"), expected(SAMPLES), rtol=1e-5, atol=1e-5)
    response = result.get_response()
    assert response.model_version == "1.0.1" and response.id == "r-7"
    versioned = client.infer("digits", [infer_input(SAMPLES[:1])], model_version="1.0.1")
    assert versioned.as_numpy("logits").shape == (1, 10)


def test_typed_contents_decode_like_raw_bytes(server: GrpcServer) -> None:
    request = pb.ModelInferRequest(model_name="digits")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[2, 1, 8, 8])
    tensor.contents.fp32_contents.extend(SAMPLES[:2].ravel().tolist())
    response = pb.ModelInferResponse.FromString(
        raw_call(server, "ModelInfer", request.SerializeToString())
    )
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("logits", "FP32", [2, 10])
    got = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(2, 10)
    np.testing.assert_allclose(got, expected(SAMPLES[:2]), rtol=1e-5, atol=1e-5)


def test_bad_requests_are_the_4xx_status_codes_with_one_line(
    client: triton.InferenceServerClient, server: GrpcServer
) -> None:
    flat = SAMPLES.reshape(8, 64)
    assert "NOT_FOUND" in triton_error(client, infer_input(SAMPLES), model="nope")
    assert "no model 'nope'" in triton_error(client, infer_input(SAMPLES), model="nope")
    shape = triton_error(client, infer_input(flat))
    assert "INVALID_ARGUMENT" in shape and "shape [8, 64]" in shape
    dtype = triton_error(client, infer_input(SAMPLES.astype(np.float64), datatype="FP64"))
    assert "INVALID_ARGUMENT" in dtype and "FP32" in dtype
    many = np.zeros((65, 1, 8, 8), np.float32)  # over max_samples
    assert "RESOURCE_EXHAUSTED" in triton_error(client, infer_input(many))
    assert "UNAVAILABLE" in triton_error(client, infer_input(SAMPLES), model="empty")
    version = triton_error(client, infer_input(SAMPLES), model_version="7.7.7")
    assert "NOT_FOUND" in version and "serving: 1.0.1" in version
    output = triton_error(
        client, infer_input(SAMPLES), outputs=[triton.InferRequestedOutput("probs")]
    )
    assert "INVALID_ARGUMENT" in output and "unknown output 'probs'" in output
    # What tritonclient never sends: malformed bytes, mismatched raw and typed data.
    code, details = refused(server, "ModelInfer", b"\xff\xff\xff")
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "not a valid ModelInferRequest" in details
    request = pb.ModelInferRequest(model_name="digits", raw_input_contents=[b"\0" * 12])
    request.inputs.add(name="input", datatype="FP32", shape=[1, 1, 8, 8])
    code, details = refused(server, "ModelInfer", request.SerializeToString())
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "12 bytes" in details
    request = pb.ModelInferRequest(model_name="digits")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 1, 8, 8])
    request.inputs[0].contents.fp32_contents.extend([1.0] * 3)
    code, details = refused(server, "ModelInfer", request.SerializeToString())
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "holds 3 values" in details
    huge = pb.ModelInferRequest(model_name="digits", raw_input_contents=[b""])
    huge.inputs.add(name="input", datatype="FP32", shape=[1 << 40, 1, 8, 8])
    code, _ = refused(server, "ModelInfer", huge.SerializeToString())
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    for details in (shape, dtype, version, output):
        assert "\n" not in details.strip() and "Traceback" not in details
    # The model answers exactly afterwards.
    result = client.infer("digits", [infer_input(SAMPLES)])
    np.testing.assert_allclose(result.as_numpy("logits"), expected(SAMPLES), rtol=1e-5, atol=1e-5)


def test_a_message_over_max_body_bytes_is_resource_exhausted(
    client: triton.InferenceServerClient,
) -> None:
    big = np.zeros((64, 1, 8, 8), np.float32)
    big = np.concatenate([big] * 4)[:64]  # 16 KiB: under the cap
    assert client.infer("digits", [infer_input(big)]).as_numpy("logits").shape == (64, 10)
    over = np.zeros((1000, 1, 8, 8), np.float32)  # 256 KB > the server's 200,000-byte cap
    assert "RESOURCE_EXHAUSTED" in triton_error(client, infer_input(over))


def test_serves_on_a_unix_socket_and_replaces_only_a_dead_socket(
    tmp_path: Path, loaded: LoadedVersion
) -> None:
    slot = ServingSlot("digits")
    slot.swap(loaded)
    path = tmp_path / "grpc.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # what a killed agent leaves: a socket no one listens on
    server = make_server({"digits": slot}, unix_socket=str(path))
    server.start()
    try:
        assert oct(os.stat(path).st_mode & 0o777) == "0o660"
        with triton.InferenceServerClient(f"unix:{path}") as c:
            assert c.is_server_live()
            result = c.infer("digits", [infer_input(SAMPLES[:2])])
        np.testing.assert_allclose(
            result.as_numpy("logits"), expected(SAMPLES[:2]), rtol=1e-5, atol=1e-5
        )
        second = make_server({"digits": slot}, unix_socket=str(path))
        with pytest.raises(OSError, match="in use"):
            second.start()
    finally:
        server.stop()
    regular = tmp_path / "file"
    regular.write_text("keep me")
    with pytest.raises(OSError, match="regular file"):
        make_server({"digits": slot}, unix_socket=str(regular)).start()
    assert regular.read_text() == "keep me"


def test_an_address_in_use_is_one_oserror(server: GrpcServer, loaded: LoadedVersion) -> None:
    slot = ServingSlot("digits")
    slot.swap(loaded)
    second = make_server({"digits": slot}, port=server.bound_port)
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{server.bound_port}"):
        second.start()
    second.stop()


def test_config_validates_the_grpc_keys(tmp_path: Path, broker: Broker, keyring: Path) -> None:
    def config(**serving: Any) -> Any:
        return load_config(write_config(tmp_path, broker, keyring / "root.json", serving=serving))

    ok = config(listen="127.0.0.1:8470", grpc_listen="[::1]:8001")
    assert (ok.serving.grpc_host, ok.serving.grpc_port) == ("::1", 8001)
    assert config().serving.grpc_listen == "" and config().serving.grpc_unix_socket is None
    cases = {
        "must be a loopback HOST:PORT": {"grpc_listen": "0.0.0.0:8001"},
        "grpc_listen": {"grpc_listen": "127.0.0.1:99999"},
        "give HTTP and gRPC a port each": {
            "listen": "127.0.0.1:8470",
            "grpc_listen": "127.0.0.1:8470",
        },
        "give HTTP and gRPC a socket each": {
            "unix_socket": str(tmp_path / "a.sock"),
            "grpc_unix_socket": str(tmp_path / "a.sock"),
        },
    }
    for message, serving in cases.items():
        with pytest.raises(ConfigError, match=message) as info:
            config(**serving)
        assert "\n" not in str(info.value)
    (tmp_path / "file.sock").write_text("")
    with pytest.raises(ConfigError, match=r"grpc_unix_socket.*not a socket"):
        config(grpc_unix_socket=str(tmp_path / "file.sock"))


def test_the_committed_protoc_module_matches_the_proto(tmp_path: Path) -> None:
    from agent.protos.generate import generate

    generate(tmp_path)
    spec = importlib.util.spec_from_file_location("fresh_pb2", tmp_path / "grpc_predict_v2_pb2.py")
    assert spec is not None and spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)  # its own private pool: no clash with the committed one
    assert fresh.DESCRIPTOR.serialized_pb == pb.DESCRIPTOR.serialized_pb, (
        "agent/protos/grpc_predict_v2_pb2.py is stale: run python agent/protos/generate.py"
    )


def test_answers_are_counted_under_the_http_status_their_code_stands_for(
    loaded: LoadedVersion,
) -> None:
    slot = ServingSlot("digits")
    slot.swap(loaded)
    metrics = Metrics()
    server = make_server({"digits": slot}, metrics=metrics)
    server.start()
    try:
        with triton.InferenceServerClient(f"127.0.0.1:{server.bound_port}") as c:
            c.infer("digits", [infer_input(SAMPLES)])
            triton_error(c, infer_input(SAMPLES.reshape(8, 64)))
    finally:
        server.stop()
    counts = {
        (s.labels["code"], s.labels["version"]): s.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        if family.name == "edge_agent_requests"
        for s in family.samples
    }
    assert counts == {("200", "1.0.1"): 1.0, ("422", "1.0.1"): 1.0}


def test_grpc_keys_without_grpcio_stop_the_agent_with_one_line(
    tmp_path: Path, broker: Broker, keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "agent.serving.grpc_server", None)  # as if grpcio were missing
    path = write_config(
        tmp_path, broker, keyring / "root.json", serving={"grpc_listen": "127.0.0.1:0"}
    )
    agent = Agent(load_config(path))
    with pytest.raises(ConfigError, match=r"pip install 'edgesdk-fleet\[grpc\]'") as info:
        agent.run()
    assert "\n" not in str(info.value) and agent.grpc_servers == []

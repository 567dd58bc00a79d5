"""The gRPC API under hostile requests: Hypothesis-built ModelInferRequests through the pure
decoder, and thousands of byte-level mutations of valid messages through a real grpcio server.
Every answer is OK or a 4xx-equivalent status (never INTERNAL or UNKNOWN), nothing is logged
as an error, memory stays bounded, and the model still answers exactly afterwards."""

from __future__ import annotations

import logging
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.metrics import Metrics
from agent.protos import grpc_predict_v2_pb2 as pb
from agent.serving import codec, oip_tensors
from agent.serving.grpc_messages import decode_infer
from agent.serving.grpc_server import GrpcServer
from agent.serving.grpc_service import GrpcInference
from agent.serving.slots import ServingSlot
from agent.update.selftest import LoadedVersion, gate
from edge_sdk.core.tensors import TensorSpec
from testing.agents import SAMPLES, make_bundle
from tests.agent.serving.test_grpc_server import expected
from tests.fuzz import mutations

LIMITS = codec.Limits(max_samples=64, max_decoded_bytes=1 << 20)
SPECS = (TensorSpec("input", ("batch", 1, 8, 8), "float32"),)
ANSWERED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
}
FIELDS = (
    "bool_contents",
    "int_contents",
    "int64_contents",
    "uint_contents",
    "uint64_contents",
    "fp32_contents",
    "fp64_contents",
)

tensors = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input", "other", ""]),
        "datatype": st.sampled_from([*oip_tensors.DATATYPES, "BYTES", "BF16", "fp32", ""]),
        "shape": st.lists(
            st.one_of(st.integers(-3, 70), st.integers(-(2**63), 2**63 - 1)), max_size=20
        ),
        "field": st.sampled_from(FIELDS),
        "count": st.integers(0, 300),
        "value": st.one_of(st.floats(allow_nan=True), st.integers(-(2**40), 2**40)),
        "raw": st.binary(max_size=600),
    }
)


def build(items: list[dict[str, Any]], use_raw: bool, outputs: list[str]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="digits")
    for item in items:
        tensor = request.inputs.add(
            name=item["name"], datatype=item["datatype"], shape=item["shape"]
        )
        if use_raw:
            request.raw_input_contents.append(item["raw"])
            continue
        field = getattr(tensor.contents, item["field"])
        value = item["value"]
        try:
            field.extend([value] * item["count"])
        except (TypeError, ValueError):  # the field's own type check: not a request
            field.extend([1] * item["count"])
    for name in outputs:
        request.outputs.add(name=name)
    return request


@settings(max_examples=300)
@given(
    st.lists(tensors, max_size=3),
    st.booleans(),
    st.lists(st.sampled_from(["logits", "probs"]), max_size=3),
)
def test_built_requests_decode_or_are_a_request_error(
    items: list[dict[str, Any]], use_raw: bool, outputs: list[str]
) -> None:
    request = build(items, use_raw, outputs)
    try:
        arrays = decode_infer(request, SPECS, LIMITS)
    except codec.RequestError as e:
        assert 400 <= e.status < 500 and "\n" not in e.message
        return
    (array,) = arrays.values()
    assert array.dtype == np.float32 and array.shape[1:] == (1, 8, 8)
    assert 1 <= array.shape[0] <= LIMITS.max_samples


@pytest.fixture(scope="module")
def loaded(signing_keys: Path) -> LoadedVersion:
    version = gate(make_bundle(signing_keys, 1), threads=1, memory_budget_mb=1e6, max_latency_ms=0)
    assert version.gate.passed, version.gate.detail
    return version


@pytest.fixture()
def server(loaded: LoadedVersion) -> Iterator[GrpcServer]:
    slot = ServingSlot("digits")
    slot.swap(loaded)
    service = GrpcInference({"digits": slot}, Metrics(), threads=1, limits=LIMITS)
    server = GrpcServer(service, max_message_bytes=200_000)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def valid_requests() -> list[bytes]:
    raw = pb.ModelInferRequest(
        model_name="digits", id="a", raw_input_contents=[SAMPLES[:2].tobytes()]
    )
    raw.inputs.add(name="input", datatype="FP32", shape=[2, 1, 8, 8])
    raw.outputs.add(name="logits")
    typed = pb.ModelInferRequest(model_name="digits", model_version="1.0.1")
    tensor = typed.inputs.add(name="input", datatype="FP32", shape=[1, 1, 8, 8])
    tensor.contents.fp32_contents.extend(SAMPLES[0].ravel().tolist())
    return [raw.SerializeToString(), typed.SerializeToString()]


def test_fuzzed_messages_over_a_real_server(
    server: GrpcServer, caplog: pytest.LogCaptureFixture
) -> None:
    metadata = pb.ModelMetadataRequest(name="digits", version="1.0.1").SerializeToString()
    ready = pb.ModelReadyRequest(name="digits").SerializeToString()
    codes: dict[grpc.StatusCode, int] = {}
    tracemalloc.start()
    with (
        caplog.at_level(logging.ERROR),
        grpc.insecure_channel(f"127.0.0.1:{server.bound_port}") as channel,
    ):
        methods = {
            name: channel.unary_unary(f"/inference.GRPCInferenceService/{name}")
            for name in ("ModelInfer", "ModelMetadata", "ModelReady")
        }
        cases = [
            *(("ModelInfer", m) for m in mutations(seed=16, seeds=valid_requests(), count=2000)),
            *(("ModelMetadata", m) for m in mutations(seed=17, seeds=[metadata], count=300)),
            *(("ModelReady", m) for m in mutations(seed=18, seeds=[ready], count=300)),
        ]
        for method, body in cases:
            try:
                methods[method](body, timeout=30)
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                error: Any = e
                code = error.code()
                assert "\n" not in error.details().strip()
            codes[code] = codes.get(code, 0) + 1
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        answer = pb.ModelInferResponse.FromString(methods["ModelInfer"](valid_requests()[0]))
    assert set(codes) <= ANSWERED, codes
    assert codes.get(grpc.StatusCode.OK, 0) > 0 and len(codes) > 2, codes
    assert peak < 64 << 20, f"{peak / 2**20:.0f} MiB traced"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    got = np.frombuffer(answer.raw_output_contents[0], "<f4").reshape(2, 10)
    np.testing.assert_allclose(got, expected(SAMPLES[:2]), rtol=1e-5, atol=1e-5)

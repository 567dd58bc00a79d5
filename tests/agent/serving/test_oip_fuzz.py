"""The Open Inference Protocol core and its HTTP routes under hostile input: Hypothesis over the
request's structure (names, shapes, datatypes, data, parameters, binary sizes), a seeded loop
of byte-level mutants of valid JSON and binary-extension bodies through the real ASGI app, and
responses that read back exactly. Only a RequestError (a 4xx) ever comes out, memory stays
bounded, and the model answers exactly afterwards."""

from __future__ import annotations

import asyncio
import json
import logging
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.serving import codec, oip, oip_tensors
from agent.update.selftest import LoadedVersion, gate
from edge_sdk.core.tensors import TensorSpec
from testing.agents import SAMPLES, make_bundle
from tests.agent.serving.test_inference_api_fuzz import (
    LIMITS,
    assert_clean,
    call,
    expected,
    make_app,
    no_tracebacks,
)
from tests.fuzz import mutations

SPECS = (TensorSpec("input", ("batch", 1, 8, 8), "float32"),)
TWO = (TensorSpec("a", ("batch", 3), "float32"), TensorSpec("b", ("batch",), "int64"))
INFER = "/v2/models/digits/infer"

names = st.sampled_from(["input", "a", "b", "", "x" * 100, "inp\u00fct"])
datatypes = st.sampled_from([*oip_tensors.DATATYPES, "BYTES", "BF16", "fp32", 7, None])
shapes = st.one_of(
    st.lists(st.integers(-2, 300), max_size=5),
    st.lists(st.integers(0, 1 << 40), max_size=3),
    st.just([1, 1, 8, 8]),
    st.just([2, 3]),
    st.text(max_size=3),
    st.none(),
)
values = st.recursive(
    st.one_of(st.floats(), st.integers(-(1 << 70), 1 << 70), st.booleans(), st.text(max_size=3)),
    lambda inner: st.lists(inner, max_size=8),
    max_leaves=80,
)
params = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-5, 600)}),
    st.dictionaries(st.sampled_from(["binary_data_size", "binary_data", "x"]), values, max_size=2),
    st.just("nope"),
)


@st.composite
def infer_requests(draw: st.DrawFn) -> tuple[bytes, bytes | None]:
    items = []
    for _ in range(draw(st.integers(0, 3))):
        item: dict[str, Any] = {"name": draw(names), "datatype": draw(datatypes)}
        shape = draw(shapes)
        if shape is not None:
            item["shape"] = shape
        p = draw(params)
        if p is not None:
            item["parameters"] = p
        if draw(st.booleans()):
            item["data"] = draw(values)
        items.append(item)
    doc: dict[str, Any] = {"inputs": items}
    if draw(st.booleans()):
        doc["outputs"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"name": st.sampled_from(["output", "logits", "x"])},
                    optional={"parameters": params},
                ),
                max_size=3,
            )
        )
    if draw(st.booleans()):
        doc["id"] = draw(st.one_of(st.text(max_size=5), st.integers()))
    if draw(st.booleans()):
        doc["parameters"] = draw(params)
    binary = draw(st.one_of(st.none(), st.binary(max_size=600)))
    return json.dumps(doc).encode(), binary


@settings(max_examples=250)
@given(infer_requests(), st.sampled_from([SPECS, TWO]))
def test_parse_infer_gives_checked_inputs_or_a_4xx(
    request: tuple[bytes, bytes | None], specs: tuple[TensorSpec, ...]
) -> None:
    header, binary = request
    try:
        parsed = oip.parse_infer(
            header, None if binary is None else memoryview(binary), specs, LIMITS
        )
    except codec.RequestError as e:
        assert 400 <= e.status < 500 and e.message and "\n" not in e.message
        return
    assert set(parsed.inputs) == {s.name for s in specs}
    for spec in specs:
        array = parsed.inputs[spec.name]
        assert array.dtype == np.dtype(spec.dtype) and array.ndim == len(spec.shape)
        assert 0 < array.shape[0] <= LIMITS.max_samples


@given(st.binary(max_size=300), st.text(max_size=25))
def test_split_binary_takes_any_bytes_and_header(body: bytes, length: str) -> None:
    try:
        head, rest = oip.split_binary(body, length)
    except codec.RequestError as e:
        assert e.status == 400
        return
    assert head + bytes(rest) == body


arrays = st.sampled_from(list(oip_tensors.DATATYPES)).flatmap(
    lambda name: st.tuples(
        st.just(name),
        st.lists(st.integers(0, 4), min_size=0, max_size=3).flatmap(
            lambda shape: st.lists(
                st.integers(0, 1) if name == "BOOL" else st.integers(0, 100),
                min_size=int(np.prod(shape)),
                max_size=int(np.prod(shape)),
            ).map(
                lambda v, shape=shape: (
                    np.asarray(v).astype(oip_tensors.DATATYPES[name]).reshape(shape)
                )
            )
        ),
    )
)


@given(st.lists(arrays, min_size=1, max_size=3), st.booleans(), st.text(max_size=8))
def test_responses_read_back_exactly(
    outputs: list[tuple[str, np.ndarray]], binary: bool, request_id: str
) -> None:
    named = {f"out{i}": a for i, (_, a) in enumerate(outputs)}
    body, head = oip.infer_response(
        "m", "1.2.0", request_id, named, set(named) if binary else set()
    )
    doc = json.loads(body if head is None else body[:head])
    assert doc["model_version"] == "1.2.0" and doc["id"] == request_id
    offset = head or 0
    for entry, (name, array) in zip(doc["outputs"], named.items(), strict=True):
        assert entry["name"] == name and entry["datatype"] == oip_tensors.datatype(array.dtype)
        dtype = oip_tensors.DATATYPES[entry["datatype"]]
        if binary:
            size = entry["parameters"]["binary_data_size"]
            got = np.frombuffer(body[offset : offset + size], dtype).reshape(entry["shape"])
            offset += size
        else:
            got = np.asarray(entry["data"], dtype).reshape(entry["shape"])
        np.testing.assert_array_equal(got, array)
    assert offset == (len(body) if binary else 0)


@pytest.fixture(scope="module")
def loaded(signing_keys: Path) -> LoadedVersion:
    version = gate(make_bundle(signing_keys, 1), threads=1, memory_budget_mb=1e6, max_latency_ms=0)
    assert version.gate.passed, version.gate.detail
    return version


def _seeds() -> list[tuple[bytes, dict[str, str]]]:
    batch = SAMPLES[:2]
    item = {"name": "input", "shape": list(batch.shape), "datatype": "FP32"}
    plain = json.dumps({"inputs": [{**item, "data": batch.ravel().tolist()}]}).encode()
    raw = batch.tobytes()
    head = json.dumps(
        {
            "id": "x",
            "inputs": [{**item, "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    binary = {"Inference-Header-Content-Length": str(len(head))}
    return [(plain, {}), (head + raw, binary)]


def test_fuzzed_v2_bodies_through_the_app_are_a_2xx_or_a_4xx(
    loaded: LoadedVersion, caplog: pytest.LogCaptureFixture
) -> None:
    """Two thousand mutants of valid JSON and binary-extension bodies, each sent with and
    without the binary header: never a 5xx or a traceback, memory bounded, the model exact
    afterwards."""
    app = make_app(loaded)
    seeds = _seeds()
    statuses: dict[int, int] = {}

    async def run() -> float:
        tracemalloc.start()
        try:
            for i, case in enumerate(mutations(seed=16, seeds=[b for b, _ in seeds], count=2000)):
                headers = seeds[i % 2][1]
                if i % 3 == 0 and headers:  # the header's length fuzzed too
                    headers = {"Inference-Header-Content-Length": str(len(case) // (i % 7 + 1))}
                status, answer_headers, body = await call(app, "POST", INFER, case, **headers)
                assert_clean(status, answer_headers, body)
                statuses[status] = statuses.get(status, 0) + 1
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    caplog.set_level(logging.INFO)
    try:
        peak = asyncio.run(run())
        status, _, body = asyncio.run(call(app, "POST", INFER, seeds[0][0]))
    finally:
        app.close()
    no_tracebacks(caplog)
    assert statuses.get(200, 0) > 0 and statuses.get(400, 0) > 0, statuses
    assert peak < 4 * LIMITS.max_decoded_bytes + (16 << 20), peak
    assert status == 200
    (out,) = json.loads(body)["outputs"]
    np.testing.assert_allclose(
        np.reshape(out["data"], out["shape"]), expected(SAMPLES[:2]), rtol=1e-5, atol=1e-5
    )


def test_v2_caps_hold_before_memory_is_spent(loaded: LoadedVersion) -> None:
    """A declared shape over max_decoded_bytes, a JSON body with more values than the device
    parses, and over max_samples: each a 413 judged from the declaration."""
    app = make_app(loaded, codec.Limits(max_samples=8, max_decoded_bytes=1024))
    huge = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [8, 1, 8, 8],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 2048},
                }
            ]
        }
    ).encode()
    many_values = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0] * 200}
            ]
        }
    ).encode()
    over_samples = json.dumps(
        {"inputs": [{"name": "input", "shape": [9, 1, 8, 8], "datatype": "FP32", "data": []}]}
    ).encode()
    try:
        got = [
            asyncio.run(
                call(
                    app, "POST", INFER, huge, **{"Inference-Header-Content-Length": str(len(huge))}
                )
            ),
            asyncio.run(call(app, "POST", INFER, many_values)),
            asyncio.run(call(app, "POST", INFER, over_samples)),
        ]
    finally:
        app.close()
    for status, headers, body in got:
        assert_clean(status, headers, body)
        assert status == 413, body

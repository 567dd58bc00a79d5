"""The status document under hostile input (``StatusDocument.parse``): anyone holding a device's
certificate can retain anything as its status. A payload that cannot be read is refused with one
``UnreadableDocument`` whose message is one short line saying why; nothing else is ever raised;
within a readable document a bad field reads as absent and the rest survives."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sdk.core.wire.protocol import (
    MAX_MODELS,
    MAX_SOURCES,
    MAX_STATUS_BYTES,
    ModelStatus,
    StatusDocument,
    UnreadableDocument,
    UpdateState,
)
from edge_sdk.core.wire.untrusted_json import MAX_DEPTH
from tests.fuzz import mutations


def agent_status(group: str = "lab", version: int = 3) -> dict[str, Any]:
    """A status document shaped exactly as the agent writes it (agent/reports.py's
    ``status_document``, written by ``edge_sdk.core.wire.protocol.StatusDocument``)."""
    figures = {
        "count": 120,
        "errors": 1,
        "error_rate": 0.0083,
        "latency_ms": {"p50": 1.5, "p95": 4.25},
    }
    return {
        "device": "dev-1",
        "fleet": "default",
        "group": group,
        "profile": "x86-64",
        "agent_version": "0.1.0",
        "uptime_s": 12.5,
        "cpu_percent": 3.1,
        "memory_rss_bytes": 81920000,
        "disk_free_bytes": 1 << 34,
        "assignment_error": "",
        "bench_job": None,
        "models": {
            "digits": {
                "version": version,
                "state": "committed",
                "target_version": version,
                "serial": 7,
                "floor": 1,
                "reason": "",
                "signed_by_revoked_key": False,
                "trust_note": "",
                "last_result": {
                    "version": version,
                    "result": "committed",
                    "reason": "",
                    "at": 1714557600.5,
                },
                "last_transfer": {
                    "chunks": 4,
                    "fetched": 1,
                    "fetched_bytes": 1000,
                    "cached": 3,
                    "reused": 0,
                    "sources": {"broker": {"chunks": 1, "bytes": 1000}},
                },
                "inference": figures,
                "probation": {"figures": figures, "previous_version": figures},
            }
        },
        "at": "2024-05-01T10:00:05Z",
    }


def written() -> StatusDocument:
    return StatusDocument.from_json(agent_status())


GOOD = written().encode()

HOSTILE: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "status is not JSON"),
    "100 KB of [": (b"[" * 100_000, "status nests deeper than 32 levels"),
    "deep objects": (b'{"a":' * 5000 + b"1" + b"}" * 5000, "status nests deeper than"),
    "huge int": (b'{"models": {"m": {"version": ' + b"9" * 5000 + b"}}}", "status is not JSON"),
    "NaN": (b'{"at": NaN}', "status is not JSON: NaN is not a JSON number"),
    "binary": (b"\xff\xfe\x00garbage", "status is not UTF-8 text"),
    "over the size limit": (b'"' + b"a" * MAX_STATUS_BYTES + b'"', "over the 262144 byte limit"),
    "an array": (b"[1, 2]", "status is not a JSON object"),
    "a string": (b'"committed"', "status is not a JSON object"),
    "truncated": (GOOD[: len(GOOD) // 2], "status is not JSON"),
}


@pytest.mark.parametrize("payload, reason", HOSTILE.values(), ids=HOSTILE.keys())
def test_an_unreadable_status_is_refused_with_one_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(UnreadableDocument) as refused:
        StatusDocument.parse(payload)
    message = str(refused.value)
    assert reason in message and "\n" not in message and len(message) < 300


def test_bad_fields_read_as_absent_and_the_rest_survives() -> None:
    doc: dict[str, Any] = written().to_json()
    doc.update(uptime_s="@1e999@", memory_rss_bytes=-1, bench_job=7, fleet=["x"])
    model = doc["models"]["digits"]
    model.update(signed_by_revoked_key="yes", floor=2**64, state="", probation=[])
    model["last_transfer"]["sources"] = {"a": 1, "b": {"chunks": True, "bytes": 5}}
    doc["models"]["x" * 129] = {"version": 1}
    payload = json.dumps(doc).replace('"@1e999@"', "1e999").encode()
    read = StatusDocument.parse(payload)
    assert (read.uptime_s, read.memory_rss_bytes, read.bench_job, read.fleet) == (0.0, 0, None, "")
    m = read.models["digits"]
    assert (m.signed_by_revoked_key, m.floor, m.state, m.probation) == (False, 0, "unknown", None)
    assert m.last_transfer is not None and set(m.last_transfer.sources) == {"b"}
    assert m.last_transfer.sources["b"].chunks == 0 and m.last_transfer.sources["b"].size == 5
    assert list(read.models) == ["digits"] and m.version == 3 and read.group == "lab"


def test_models_and_sources_are_read_up_to_their_caps() -> None:
    doc: dict[str, Any] = written().to_json()
    model = doc["models"]["digits"]
    model["last_transfer"]["sources"] = {f"s{i}": {"chunks": 1, "bytes": 1} for i in range(999)}
    doc["models"] = {f"m{i}": model for i in range(MAX_MODELS + 50)}
    read = StatusDocument.from_json(doc)  # as parsed: this much is over the size limit
    assert len(read.models) == MAX_MODELS
    transfer = read.models["m0"].last_transfer
    assert transfer is not None and len(transfer.sources) == MAX_SOURCES


# -- Hypothesis: any bytes, any JSON anywhere ------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=40,
)


def _parsed_or_refused(payload: bytes) -> StatusDocument | None:
    try:
        return StatusDocument.parse(payload)
    except UnreadableDocument as e:
        assert "\n" not in str(e) and str(e).startswith("status ")
        return None


@settings(max_examples=300)
@given(payload=st.binary(max_size=512) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_are_a_document_or_one_refusal(payload: bytes) -> None:
    read = _parsed_or_refused(payload)
    assert read is None or isinstance(read, StatusDocument)


_FIELDS = tuple(written().to_json())
_MODEL_FIELDS = tuple(ModelStatus(None, UpdateState.IDLE).to_json())


@given(where=st.sampled_from(_FIELDS), value=json_values)
def test_any_json_in_a_field_leaves_the_others_as_written(where: str, value: object) -> None:
    doc = written().to_json()
    doc[where] = value
    read = StatusDocument.parse(json.dumps(doc).encode())
    for name in _FIELDS:
        if name != where:
            assert getattr(read, name) == getattr(written(), name), name


@given(where=st.sampled_from(_MODEL_FIELDS), value=json_values)
def test_any_json_in_a_model_field_leaves_the_others_as_written(where: str, value: object) -> None:
    doc = written().to_json()
    doc["models"]["digits"][where] = value
    model = StatusDocument.parse(json.dumps(doc).encode()).models["digits"]
    for name in _MODEL_FIELDS:
        if name != where:
            assert getattr(model, name) == getattr(written().models["digits"], name), name


@given(depth=st.integers(min_value=0, max_value=3000), opener=st.sampled_from(["[", '{"a":']))
def test_any_nesting_depth_is_read_or_refused(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    read = _parsed_or_refused((opener * depth + "1" + closer * depth).encode())
    assert (read is not None) == (0 < depth <= MAX_DEPTH and opener != "[")


def test_fuzzed_documents_are_read_or_refused_and_stay_in_range() -> None:
    seeds = [GOOD, written().encode().replace(b"dev-1", b"dev-2")]
    readable = 0
    for case in mutations(seed=17, seeds=seeds, count=3000):
        read = _parsed_or_refused(case)
        if read is None:
            continue
        readable += 1
        for model in read.models.values():
            assert model.version is None or 0 <= model.version < 2**63
            assert "\n" not in model.reason and len(model.reason) <= 2048
    assert readable > 0  # the loop reached past the JSON reader, into the field parsing


def test_the_fixture_is_exactly_what_the_agents_type_writes() -> None:
    assert written().to_json() == agent_status()

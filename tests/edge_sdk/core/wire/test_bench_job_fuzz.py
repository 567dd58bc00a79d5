"""Benchmark jobs and answers are what strangers can send: a device reads jobs anyone with
operator access could edit, the operator reads answers a device writes. However hostile,
reading one gives a job or answer, or our own one-line error; and the device's decision on a
verified job (``agent.bench_job.judge``) is pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.bench_job import Refusal, judge
from agent.update.serials import Verdict
from edge_sdk.build.device_measure import device_latency, judged_on_device
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.core.wire.bench_job import (
    BenchAnswer,
    BenchJob,
    CandidateResult,
    parse_answer,
    sign_job,
    verify_job,
)
from edge_sdk.errors import BundleError, EdgeSdkError
from edge_sdk.fleet.bench import Artifact, JobSpec, make_job
from edge_sdk.signing.keys import load_signer, load_trust_root
from tests.hostile_json import JSONISH, edited, encode

LATER = datetime.now(UTC) + timedelta(days=1)
SPEC = JobSpec(
    device="cam-01",
    profile="x86-64-vnni",
    runtime="onnx",
    inputs=(TensorSpec("input", ("batch", 1, 8, 8), "float32", "NCHW"),),
    outputs=(TensorSpec("logits", ("batch", 10), "float32", "NC"),),
    golden=b"golden bytes",
    artifacts=(
        Artifact("fp32", "fp32", {"threads": 2}, b"a" * 5000),
        Artifact("int8_static-minmax", "int8_static", {"threads": 2}, b"b" * 3000),
    ),
)


def job(serial: int = 5, **changes: Any) -> BenchJob:
    from dataclasses import replace

    made, _ = make_job(replace(SPEC, **changes), serial)
    return made


def decide(j: BenchJob, floor: int = 0, busy: str | None = None) -> Refusal | Verdict:
    return judge(
        j, device="cam-01", profile="x86-64-vnni", floor=floor, max_artifact_bytes=4000, busy=busy
    )


def test_the_devices_decision() -> None:
    small = job(artifacts=SPEC.artifacts[1:])
    assert decide(small) is Verdict.NEW
    assert decide(small, floor=5) is Verdict.SEEN  # the retained copy of a job taken
    assert decide(small, floor=6) == Refusal(
        "replayed benchmark job serial 5 refused: serial 6 was already accepted"
    )
    other = job(device="cam-02", artifacts=SPEC.artifacts[1:])
    assert isinstance(decide(other), Refusal) and "is for devices/cam-02" in decide(other).reason  # type: ignore[union-attr]
    wrong = decide(job(profile="x86-64", artifacts=SPEC.artifacts[1:]))
    assert (
        isinstance(wrong, Refusal) and "is for profile x86-64, this is x86-64-vnni" in wrong.reason
    )
    big = decide(job())
    assert isinstance(big, Refusal) and "candidate fp32 is 5000 bytes, over" in big.reason
    busy = decide(small, busy="abcdef01")
    assert isinstance(busy, Refusal) and busy.reason.startswith("busy with benchmark job abcdef01")


def test_a_baseline_names_a_candidate() -> None:
    doc = job(baseline="fp32").to_json()
    assert BenchJob.from_json(doc).baseline == "fp32"
    with pytest.raises(BundleError, match="'baseline' must name one of the candidates"):
        BenchJob.from_json({**doc, "baseline": "nope"})


def test_device_figures_are_scaled_by_the_interleaved_baseline() -> None:
    def result(name: str, p50: float, beside: float | None) -> CandidateResult:
        figures = {"p50": p50, "p95": p50 * 2, "p99": p50 * 3, "mean": p50, "runs": 10}
        return CandidateResult(name, latency_ms=figures, baseline_p50_ms=beside)

    answer = BenchAnswer(
        "abcdef01", "cam-01", "done",
        results=(result("source", 1.0, None), result("int8", 0.9, 2.0), result("fp16", 3.0, None)),
    )  # fmt: skip
    got = device_latency(answer)
    # int8 ran beside a source that took 2.0 ms under load (1.0 alone): it is twice as fast.
    assert got["int8"].p50_ms == pytest.approx(0.45) and got["int8"].p99_ms == pytest.approx(1.35)
    assert got["source"].p50_ms == 1.0 and got["fp16"].p50_ms == 3.0  # nothing to scale by


def test_a_candidate_unfaithful_on_the_devices_runtime_is_out() -> None:
    from edge_sdk.build.search import Candidate, choose
    from edge_sdk.core.fidelity import Fidelity
    from edge_sdk.core.profiles import resolve_profile
    from edge_sdk.runtime.timing import LatencyStats

    fast, slow = LatencyStats(1, 1, 1, 1, 9), LatencyStats(4, 4, 4, 4, 9)
    good = Fidelity(1.0, 0.9999, 0.01)
    candidates = [
        Candidate("int8", "int8_static", {}, 10, good, latency=fast),
        Candidate("fp32", "fp32", {}, 40, good, latency=slow),
    ]
    answer = BenchAnswer(
        "abcdef01", "cam-01", "done",
        results=(
            CandidateResult("int8", fidelity={"cosine": 0.93, "top1_agreement": 0.75}),
            CandidateResult("fp32", fidelity={"cosine": 0.98999, "top1_agreement": 1.0}),
        ),
    )  # fmt: skip
    judged = judged_on_device(candidates, answer, 0.99)
    assert judged[0].fidelity is not None and judged[0].fidelity.cosine == 0.93
    assert judged[0].notes == ("on device cam-01: cosine 0.9300 on the golden vectors",)
    assert judged[1] == candidates[1]  # within the noise of 8 vectors: the host's figure stands
    chosen = choose(judged, resolve_profile("x86-64-vnni"), slow, None)
    assert [c.name for c in chosen if c.chosen] == ["fp32"]
    assert chosen[0].reason == "outside accuracy budget: cosine 0.9300 < budget 0.9900"


def test_a_job_round_trips_through_its_signature(signing_keys: Path) -> None:
    j = job()
    data = sign_job(j, [load_signer(signing_keys / "online-1.key")], expires=LATER)
    assert verify_job(load_trust_root(signing_keys / "root.json"), data) == j
    assert j.total_bytes == 8000 + len(b"golden bytes")


def outcome_of_job(signing_keys: Path, data: bytes) -> BenchJob | EdgeSdkError:
    try:
        return verify_job(load_trust_root(signing_keys / "root.json"), data)
    except EdgeSdkError as e:
        assert str(e) and "\n" not in str(e), repr(str(e))
        return e


@settings(max_examples=200)
@given(data=st.data())
def test_an_edited_signed_job_is_refused_with_our_error_only(
    signing_keys: Path, data: st.DataObject
) -> None:
    payload = sign_job(job(), [load_signer(signing_keys / "online-1.key")], expires=LATER)
    result = outcome_of_job(signing_keys, encode(data.draw(edited(json.loads(payload)))))
    if isinstance(result, BenchJob):  # an edit outside the signed part
        assert result == job() or result.job


@given(doc=JSONISH)
def test_any_job_document_parses_or_is_malformed(doc: Any) -> None:
    try:
        BenchJob.from_json(doc)
    except BundleError as e:
        assert str(e).startswith("benchmark job is malformed") or "manifest tensor" in str(e)


@given(data=st.data())
def test_any_edit_of_a_job_document_parses_or_is_malformed(data: st.DataObject) -> None:
    try:
        BenchJob.from_json(data.draw(edited(job().to_json())))
    except BundleError as e:
        assert "\n" not in str(e)


ANSWER = BenchAnswer(
    "abcdef0123456789",
    "cam-01",
    "done",
    done=1,
    total=1,
    runtime={"threads": 2, "onnxruntime": "1.20"},
).to_bytes()


@given(data=st.data())
def test_any_answer_parses_or_is_malformed(data: st.DataObject) -> None:
    doc = json.loads(ANSWER)
    doc["results"] = [
        {
            "name": "fp32",
            "load_ms": 3.5,
            "latency_ms": {"p50": 1, "p95": 2, "p99": 3, "mean": 1, "runs": 9},
            "peak_rss_mb": 50.0,
            "fidelity": {"cosine": 1.0, "top1_agreement": 1.0, "max_abs_error": 0.0},
            "error": None,
        }
    ]
    try:
        answer = parse_answer(encode(data.draw(edited(doc))))
    except BundleError as e:
        assert str(e).startswith("benchmark answer is malformed")
    else:
        assert answer.state in ("accepted", "running", "done", "refused", "failed")


@pytest.mark.parametrize(
    "data", [b"[" * 100_000, b"x" * 300_000, b"NaN", b"\xff", b"[]", b'{"state": "weird"}']
)
def test_pathological_answers_are_malformed(data: bytes) -> None:
    with pytest.raises(BundleError, match="benchmark answer is malformed"):
        parse_answer(data)

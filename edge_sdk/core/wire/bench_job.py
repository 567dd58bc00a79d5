"""Benchmark jobs: the operator asks one device to measure candidate artifacts on its own runtime.

A job can make a device run code the operator chose, so it carries the same trust as an
assignment: TUF targets metadata signed by the fleet's online keys, with ``signed.custom``
holding the job, an expiry, a ``devices/<id>`` scope and a serial the device keeps a floor for
(a replayed or older job is refused). The artifacts and the golden vectors travel as the usual
content-addressed chunks (``repo/chunks/<sha256>``); the job names each file's sha256, length
and chunk list, so a device checks every chunk and every file against signed hashes.

The device answers on its own subtree, ``devices/<id>/bench`` (retained: the job's latest
state). docs/protocol.md, "Benchmark jobs", is the wire description.

    <root>/desired/devices/<id>/jobs/bench   the signed job (retained; the operator writes it)
    <root>/devices/<id>/bench                the device's answer (retained; the device writes it)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from securesystemslib.signer import Signer  # type: ignore[attr-defined]

from edge_sdk.core import chunking
from edge_sdk.core.jsondepth import too_deep
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.core.trust import TrustRoot, sign_files, signed_custom, verify_files
from edge_sdk.core.wire.topics import IDENTIFIER, Topics, check_identifier
from edge_sdk.errors import BundleError, EdgeSdkError

FIELD = "bench_job"
JOB_ID = re.compile(r"^[0-9a-f]{8,64}\Z")
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
MAX_CANDIDATES = 32
MAX_CHUNKS = 1 << 16  # per file: 4 GiB at the 64 KiB average
MAX_RESULT_BYTES = 256 << 10
MAX_MS = 600_000
STATES = ("accepted", "running", "done", "refused", "failed")
IN_FLIGHT = frozenset({"accepted", "running"})


def job_topic(topics: Topics, device: str) -> str:
    return f"{topics.root}/desired/devices/{device}/jobs/bench"


def result_topic(topics: Topics, device: str) -> str:
    return f"{topics.device(device)}/bench"


def _malformed(what: str) -> BundleError:
    return BundleError(f"benchmark job is malformed: {what}")


def _typed(doc: Mapping[str, Any], name: str, kind: type, where: str = "") -> Any:
    value = doc.get(name)
    # bool is an int subclass: a JSON true is not a count.
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        raise _malformed(f"{where}{name!r} must be a {kind.__name__}")
    return value


@dataclass(frozen=True)
class Blob:
    """A file the device assembles from chunks, checked against ``sha256`` and ``length``."""

    sha256: str
    length: int
    chunks: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, data: bytes) -> tuple[Blob, dict[str, bytes]]:
        import hashlib

        cuts = chunking.split(data)
        blob = cls(
            hashlib.sha256(data).hexdigest(),
            len(data),
            tuple((c.sha256, c.length) for c in cuts),
        )
        return blob, {c.sha256: chunking.chunk_bytes(data, c) for c in cuts}

    def to_json(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "length": self.length,
            "chunks": [list(c) for c in self.chunks],
        }

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Blob:
        if not isinstance(doc, dict):
            raise _malformed(f"{where} is not an object")
        sha, length = _typed(doc, "sha256", str, where), _typed(doc, "length", int, where)
        raw = _typed(doc, "chunks", list, where)
        if not _SHA256.match(sha) or length < 0 or len(raw) > MAX_CHUNKS:
            raise _malformed(f"{where} has a bad sha256, length or chunk count")
        chunks: list[tuple[str, int]] = []
        for c in raw:
            ok = isinstance(c, list) and len(c) == 2 and isinstance(c[0], str)
            if not ok or not _SHA256.match(c[0]) or type(c[1]) is not int or c[1] <= 0:
                raise _malformed(f"{where} lists a chunk that is not [sha256, length > 0]")
            chunks.append((c[0], c[1]))
        if sum(n for _, n in chunks) != length:
            raise _malformed(f"{where}'s chunks do not add up to its length")
        return cls(sha, length, tuple(chunks))


@dataclass(frozen=True)
class BenchCandidate:
    name: str
    precision: str
    settings: Mapping[str, Any]  # the manifest's runtime_settings: how the device opens it
    artifact: Blob

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "precision": self.precision,
            "settings": dict(self.settings),
            "artifact": self.artifact.to_json(),
        }


@dataclass(frozen=True)
class BenchJob:
    job: str  # random hex: names the answer
    scope: str  # devices/<id>: one device, never a group
    serial: int
    profile: str
    runtime: str
    candidates: tuple[BenchCandidate, ...]
    golden: Blob  # .npz of inputs and the source model's outputs (edge_sdk.core.golden)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    seconds: float = 2.0  # timing per candidate
    timeout_s: float = 60.0  # per candidate, loading and timing together
    max_memory_mb: int = 1024  # address space of the process that runs one candidate
    # A candidate every other one is timed against, interleaved in the same process, so load
    # on the device hits both alike ("" for none): the build's source model.
    baseline: str = ""

    @property
    def device(self) -> str:
        return self.scope.removeprefix("devices/")

    @property
    def total_bytes(self) -> int:
        return self.golden.length + sum(c.artifact.length for c in self.candidates)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "scope": self.scope,
            "serial": self.serial,
            "profile": self.profile,
            "runtime": self.runtime,
            "candidates": [c.to_json() for c in self.candidates],
            "golden": self.golden.to_json(),
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            # Canonical JSON, which signatures cover, has no floats: milliseconds.
            "timing_ms": round(self.seconds * 1000),
            "timeout_ms": round(self.timeout_s * 1000),
            "max_memory_mb": self.max_memory_mb,
            "baseline": self.baseline,
        }

    @classmethod
    def from_json(cls, doc: Any) -> BenchJob:
        """Strict: every field has its type and its range, or the job is malformed."""
        if not isinstance(doc, dict):
            raise _malformed("not a JSON object")
        job, scope = _typed(doc, "job", str), _typed(doc, "scope", str)
        if not JOB_ID.match(job):
            raise _malformed("'job' must be 8-64 lowercase hex digits")
        if not scope.startswith("devices/") or not IDENTIFIER.match(scope[8:]):
            raise _malformed("'scope' must be devices/<id> (a job names one device)")
        serial, profile = _typed(doc, "serial", int), _typed(doc, "profile", str)
        runtime = _typed(doc, "runtime", str)
        if serial < 1 or runtime not in ("onnx", "tflite"):
            raise _malformed("'serial' must be positive and 'runtime' onnx or tflite")
        try:
            check_identifier(profile, "profile")
        except EdgeSdkError as e:
            raise _malformed(str(e)) from None
        raw = _typed(doc, "candidates", list)
        if not 1 <= len(raw) <= MAX_CANDIDATES:
            raise _malformed(f"'candidates' must list 1 to {MAX_CANDIDATES}")
        candidates = []
        for i, c in enumerate(raw):
            where = f"candidate {i} "
            if not isinstance(c, dict):
                raise _malformed(f"{where}is not an object")
            name, precision = _typed(c, "name", str, where), _typed(c, "precision", str, where)
            if not IDENTIFIER.match(name) or not IDENTIFIER.match(precision):
                raise _malformed(f"{where}name or precision is not a plain identifier")
            settings = _typed(c, "settings", dict, where)
            candidates.append(
                BenchCandidate(name, precision, settings, Blob.from_json(c.get("artifact"), where))
            )
        if len({c.name for c in candidates}) != len(candidates):
            raise _malformed("two candidates share a name")
        specs = []
        for key in ("inputs", "outputs"):
            items = _typed(doc, key, list)
            if not 1 <= len(items) <= 1024 or not all(isinstance(t, dict) for t in items):
                raise _malformed(f"'{key}' must list 1 to 1024 tensor objects")
            specs.append(tuple(TensorSpec.from_json(t) for t in items))
        timing, timeout = _typed(doc, "timing_ms", int), _typed(doc, "timeout_ms", int)
        memory = _typed(doc, "max_memory_mb", int)
        baseline = doc.get("baseline", "")
        if not isinstance(baseline, str) or baseline not in {"", *(c.name for c in candidates)}:
            raise _malformed("'baseline' must name one of the candidates, or be empty")
        if not (0 < timing <= MAX_MS and 0 < timeout <= MAX_MS and memory > 0):
            raise _malformed(f"'timing_ms' and 'timeout_ms' must be in (0, {MAX_MS}]")
        return cls(
            job,
            scope,
            serial,
            profile,
            runtime,
            tuple(candidates),
            Blob.from_json(doc.get("golden"), "golden "),
            specs[0],
            specs[1],
            timing / 1000,
            timeout / 1000,
            memory,
            baseline,
        )


def sign_job(job: BenchJob, signers: Sequence[Signer], *, expires: datetime) -> bytes:
    return sign_files({}, signers, expires=expires, custom={FIELD: job.to_json()}, version=1)


def verify_job(root: TrustRoot, data: bytes, *, now: datetime | None = None) -> BenchJob:
    """The job in ``data`` if it carries the targets threshold of ``root``; otherwise the
    ``TrustError`` (unsigned, unknown key, expired) or ``BundleError`` (malformed) saying why."""
    targets = verify_files(root, data, {}, now=now, subject="benchmark job")
    custom = signed_custom(targets, "benchmark job")
    if FIELD not in custom:
        raise BundleError("signed metadata holds no benchmark job")
    return BenchJob.from_json(custom[FIELD])


# --- the device's answer ------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateResult:
    name: str
    load_ms: float | None = None
    latency_ms: Mapping[str, float] | None = None  # p50, p95, p99, mean, runs, throughput_per_s
    peak_rss_mb: float | None = None
    fidelity: Mapping[str, float | None] | None = None  # cosine, top1_agreement, max_abs_error
    error: str | None = None
    # The job's baseline, timed interleaved with this candidate in the same process.
    baseline_p50_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "load_ms": self.load_ms,
            "latency_ms": dict(self.latency_ms) if self.latency_ms else None,
            "peak_rss_mb": self.peak_rss_mb,
            "fidelity": dict(self.fidelity) if self.fidelity else None,
            "error": self.error,
            "baseline_p50_ms": self.baseline_p50_ms,
        }


@dataclass(frozen=True)
class BenchAnswer:
    job: str
    device: str
    state: str  # STATES
    reason: str = ""
    done: int = 0
    total: int = 0
    results: tuple[CandidateResult, ...] = ()
    runtime: Mapping[str, Any] = field(default_factory=dict)  # what measured: runtime, threads

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "job": self.job,
                "device": self.device,
                "state": self.state,
                "reason": self.reason,
                "done": self.done,
                "total": self.total,
                "results": [r.to_json() for r in self.results],
                "runtime": dict(self.runtime),
            },
            sort_keys=True,
        ).encode()


_LATENCY_KEYS = ("p50", "p95", "p99", "mean", "runs", "throughput_per_s")
_FIDELITY_KEYS = ("cosine", "top1_agreement", "max_abs_error")


def _number(value: Any, what: str, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise BundleError(f"benchmark answer is malformed: {what} is not a number")
    return float(value)


def _figures(doc: Any, keys: Sequence[str], what: str) -> dict[str, float | None] | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise BundleError(f"benchmark answer is malformed: {what} is not an object")
    return {k: _number(doc.get(k), f"{what}.{k}") for k in keys}


def parse_answer(data: bytes) -> BenchAnswer:
    """A device's answer as the operator reads it: a device is a remote party, so sizes, depth
    and every field's type are checked; any problem is one ``BundleError``."""
    if len(data) > MAX_RESULT_BYTES or too_deep(data):
        raise BundleError("benchmark answer is malformed: too large or too deeply nested")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(f"benchmark answer is malformed: {str(e)[:80]}") from None
    if not isinstance(doc, dict):
        raise BundleError("benchmark answer is malformed: not a JSON object")
    text = {k: doc.get(k, "") for k in ("job", "device", "state", "reason")}
    if not all(isinstance(v, str) for v in text.values()) or text["state"] not in STATES:
        raise BundleError("benchmark answer is malformed: job, device, state or reason")
    counts = [doc.get("done", 0), doc.get("total", 0)]
    if not all(type(n) is int and n >= 0 for n in counts):
        raise BundleError("benchmark answer is malformed: done and total must be counts")
    results = []
    raw = doc.get("results", [])
    if not isinstance(raw, list) or len(raw) > MAX_CANDIDATES:
        raise BundleError("benchmark answer is malformed: results")
    for r in raw:
        if not isinstance(r, dict) or not isinstance(r.get("name"), str):
            raise BundleError("benchmark answer is malformed: a result without a name")
        error = r.get("error")
        if error is not None and not isinstance(error, str):
            raise BundleError("benchmark answer is malformed: a result's error")
        latency = _figures(r.get("latency_ms"), _LATENCY_KEYS, "latency_ms")
        if latency is not None and latency["p50"] is None:
            raise BundleError("benchmark answer is malformed: latency_ms without p50")
        results.append(
            CandidateResult(
                name=r["name"][:64],
                load_ms=_number(r.get("load_ms"), "load_ms"),
                latency_ms=latency,  # type: ignore[arg-type]
                peak_rss_mb=_number(r.get("peak_rss_mb"), "peak_rss_mb"),
                fidelity=_figures(r.get("fidelity"), _FIDELITY_KEYS, "fidelity"),
                error=None if error is None else error[:300],
                baseline_p50_ms=_number(r.get("baseline_p50_ms"), "baseline_p50_ms"),
            )
        )
    runtime = doc.get("runtime", {})
    if not isinstance(runtime, dict):
        raise BundleError("benchmark answer is malformed: runtime")
    return BenchAnswer(
        text["job"][:64],
        text["device"][:64],
        text["state"],
        text["reason"][:300],
        counts[0],
        counts[1],
        tuple(results),
        {k: v for k, v in runtime.items() if isinstance(v, str | int | float)},
    )

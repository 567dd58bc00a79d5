"""The wire contract between a device and the fleet (docs/protocol.md §6 and §9), in one place.

The agent writes these documents and the operator's tools read them; both sides import this
module, so a state, a result or a status field has one spelling. What is here:

- :class:`UpdateState`, :data:`RESTING_STATES` and :class:`UpdateResult`: the names a model's
  update machine (``agent.update.machine``) reports, and the result it reaches at rest;
- :class:`StatusDocument`: a device's retained status, ``to_json()`` for the agent,
  ``parse()`` / ``from_json()`` for the fleet;
- the presence payload.

Reading never trusts the payload: anyone holding a device's certificate can retain anything
under its topics (the bounded reader and the field readers: ``edge_sdk.core.wire.untrusted_json``).
A document that cannot be read at all (over the size limit, nested too deep,
not UTF-8, not plain JSON, not an object) is refused with one :class:`UnreadableDocument`
naming why. Within a readable one every field is checked on its own, as docs/protocol.md §6
says: a field of the wrong type, an integer outside 0..2^63-1 or a non-finite number reads as
absent and the other fields stay; text is cut at ``MAX_TEXT_CHARS`` with its control
characters replaced, and at most ``MAX_MODELS`` models are read.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_sdk.core.wire.untrusted_json import (
    clean_text,
    printable,
    read_count,
    read_document,
    read_finite,
    read_optional_count,
    read_table,
)

# What a device's report may be. A real status is a few KB (about 1 KB per model); anything
# past these limits is that device's problem, never the fleet's.
MAX_STATUS_BYTES = 256 * 1024
MAX_PRESENCE_BYTES = 1024
MAX_MODELS = 256
MAX_SOURCES = 256  # mirrors (and "broker") one download fetched from
MAX_NAME_CHARS = 128


class UpdateState(enum.StrEnum):
    """A model's update state (docs/protocol.md §9; the transitions: agent.update.machine)."""

    IDLE = "idle"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    STAGED = "staged"
    ACTIVATING = "activating"
    PROBATION = "probation"
    COMMITTED = "committed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


# States in which no update is in flight: a new assignment may start one.
RESTING_STATES = frozenset(
    {UpdateState.IDLE, UpdateState.COMMITTED, UpdateState.ROLLED_BACK, UpdateState.FAILED}
)
# What the fleet shows for a state a device reported that this version does not know.
UNKNOWN_STATE = "unknown"


class UpdateResult(enum.StrEnum):
    """How a model's last update ended (``last_result.result``; the agent's metrics)."""

    COMMITTED = "committed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    REFUSED = "refused"  # turned down before it started (below the anti-rollback floor, ...)


def result_of(state: UpdateState) -> UpdateResult:
    """The result of an update that came to rest in ``state``: committed or rolled back as
    named, failed in any other state."""
    if state is UpdateState.COMMITTED:
        return UpdateResult.COMMITTED
    if state is UpdateState.ROLLED_BACK:
        return UpdateResult.ROLLED_BACK
    return UpdateResult.FAILED


class UnreadableDocument(ValueError):
    """A device's document that cannot be read at all; ``str()`` is one line saying why."""


# -- presence --------------------------------------------------------------------------------


def presence_payload(online: bool) -> bytes:
    """``devices/<id>/presence``: ``{"online": true}`` on connect, ``false`` as the Will."""
    return json.dumps({"online": online}).encode()


def parse_presence(payload: bytes | bytearray) -> bool | None:
    """A device's retained presence; None when it says nothing readable. Never raises."""
    doc, _problem = read_document(payload, MAX_PRESENCE_BYTES)
    online = doc.get("online") if isinstance(doc, dict) else None
    return online if isinstance(online, bool) else None


# -- the status document ---------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """One version's serving figures: requests, errors and latency over the recent window."""

    count: int = 0
    errors: int = 0
    error_rate: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0

    @classmethod
    def parse(cls, doc: object) -> Figures | None:
        if not isinstance(doc, Mapping):
            return None
        latency = doc.get("latency_ms")
        latency = latency if isinstance(latency, Mapping) else {}
        return cls(
            count=read_count(doc.get("count")),
            errors=read_count(doc.get("errors")),
            error_rate=read_finite(doc.get("error_rate")),
            p50_ms=read_finite(latency.get("p50")),
            p95_ms=read_finite(latency.get("p95")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "latency_ms": {"p50": self.p50_ms, "p95": self.p95_ms},
        }


@dataclass(frozen=True)
class LastResult:
    """How a model's last update ended (``result``: an :class:`UpdateResult`, as a device says
    it); ``at`` is Unix seconds."""

    version: int | None
    result: str
    reason: str = ""
    at: float = 0.0

    @classmethod
    def parse(cls, value: object) -> LastResult | None:
        doc = read_table(value)
        if doc is None:
            return None
        return cls(
            version=read_optional_count(doc.get("version")),
            result=clean_text(doc.get("result")),
            reason=clean_text(doc.get("reason")),
            at=read_finite(doc.get("at")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "result": self.result,
            "reason": self.reason,
            "at": self.at,
        }


@dataclass(frozen=True)
class SourceTally:
    """What one download fetched from one source (a mirror's base URL, or "broker")."""

    chunks: int
    size: int  # bytes

    def to_json(self) -> dict[str, Any]:
        return {"chunks": self.chunks, "bytes": self.size}


@dataclass(frozen=True)
class TransferReport:
    """The last download: chunks in the release, fetched (and their bytes), found in the cache
    (a resume), taken from installed versions, and where the fetched ones came from."""

    chunks: int
    fetched: int
    fetched_bytes: int
    cached: int
    reused: int
    sources: Mapping[str, SourceTally] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: object) -> TransferReport | None:
        doc = read_table(value)
        if doc is None:
            return None
        sources: dict[str, SourceTally] = {}
        for name, tally in (read_table(doc.get("sources")) or {}).items():
            if len(sources) == MAX_SOURCES:
                break
            counts = read_table(tally)
            if counts is not None:
                sources[clean_text(name)] = SourceTally(
                    read_count(counts.get("chunks")), read_count(counts.get("bytes"))
                )
        return cls(
            chunks=read_count(doc.get("chunks")),
            fetched=read_count(doc.get("fetched")),
            fetched_bytes=read_count(doc.get("fetched_bytes")),
            cached=read_count(doc.get("cached")),
            reused=read_count(doc.get("reused")),
            sources=sources,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "chunks": self.chunks,
            "fetched": self.fetched,
            "fetched_bytes": self.fetched_bytes,
            "cached": self.cached,
            "reused": self.reused,
            "sources": {name: tally.to_json() for name, tally in self.sources.items()},
        }


@dataclass(frozen=True)
class Probation:
    """The health gate's view in the current or last probation: the new version's figures and
    those of the version it replaced."""

    figures: Figures | None
    previous_version: Figures | None = None

    @classmethod
    def parse(cls, value: object) -> Probation | None:
        doc = read_table(value)
        if doc is None:
            return None
        return cls(Figures.parse(doc.get("figures")), Figures.parse(doc.get("previous_version")))

    def to_json(self) -> dict[str, Any]:
        return {
            "figures": None if self.figures is None else self.figures.to_json(),
            "previous_version": None
            if self.previous_version is None
            else self.previous_version.to_json(),
        }


@dataclass(frozen=True)
class ModelStatus:
    """One model on one device (``models.<name>`` of its status)."""

    # What is actually served, never just what `current` names.
    version: int | None
    state: str  # an UpdateState as the device says it; UNKNOWN_STATE when unreadable
    signed_by_revoked_key: bool = False
    trust_note: str = ""
    target_version: int | None = None
    # The assignment that started the last or ongoing update: how an operator's rollout tells
    # its own outcome from an older one for the same version.
    serial: int = 0
    floor: int = 0
    reason: str = ""
    last_result: LastResult | None = None
    last_transfer: TransferReport | None = None
    inference: Figures | None = None
    probation: Probation | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ModelStatus:
        return cls(
            version=read_optional_count(doc.get("version")),
            state=clean_text(doc.get("state")) or UNKNOWN_STATE,
            signed_by_revoked_key=doc.get("signed_by_revoked_key") is True,
            trust_note=clean_text(doc.get("trust_note")),
            target_version=read_optional_count(doc.get("target_version")),
            serial=read_count(doc.get("serial")),
            floor=read_count(doc.get("floor")),
            reason=clean_text(doc.get("reason")),
            last_result=LastResult.parse(doc.get("last_result")),
            last_transfer=TransferReport.parse(doc.get("last_transfer")),
            inference=Figures.parse(doc.get("inference")),
            probation=Probation.parse(doc.get("probation")),
        )

    def to_json(self) -> dict[str, Any]:
        def optional(part: LastResult | TransferReport | Figures | Probation | None) -> Any:
            return None if part is None else part.to_json()

        return {
            "version": self.version,
            "signed_by_revoked_key": self.signed_by_revoked_key,
            "trust_note": self.trust_note,
            "state": str(self.state),
            "target_version": self.target_version,
            "serial": self.serial,
            "floor": self.floor,
            "reason": self.reason,
            "last_result": optional(self.last_result),
            "last_transfer": optional(self.last_transfer),
            "inference": optional(self.inference),
            "probation": optional(self.probation),
        }


@dataclass(frozen=True)
class StatusDocument:
    """A device's retained status (``devices/<id>/status``, docs/protocol.md §6)."""

    device: str
    fleet: str = ""
    group: str = ""
    profile: str = ""
    agent_version: str = ""
    uptime_s: float = 0.0
    cpu_percent: float = 0.0
    memory_rss_bytes: int = 0
    disk_free_bytes: int = 0
    assignment_error: str = ""
    bench_job: str | None = None  # the benchmark job in flight (edge_sdk.core.wire.bench_job)
    models: Mapping[str, ModelStatus] = field(default_factory=dict)
    at: str = ""  # UTC, YYYY-MM-DDTHH:MM:SSZ

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "fleet": self.fleet,
            "group": self.group,
            "profile": self.profile,
            "agent_version": self.agent_version,
            "uptime_s": self.uptime_s,
            "cpu_percent": self.cpu_percent,
            "memory_rss_bytes": self.memory_rss_bytes,
            "disk_free_bytes": self.disk_free_bytes,
            "assignment_error": self.assignment_error,
            "bench_job": self.bench_job,
            "models": {name: model.to_json() for name, model in self.models.items()},
            "at": self.at,
        }

    def encode(self) -> bytes:
        """The payload the agent retains: keys sorted, no spaces (docs/protocol.md §6). Each
        copy crosses the broker twice (in, and out to every watcher), so the spaces of the
        default separators (about 10 %) were paid for twice per report."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, payload: bytes | bytearray) -> StatusDocument:
        """A status as a device retained it, or :class:`UnreadableDocument` saying why not."""
        doc, problem = read_document(payload, MAX_STATUS_BYTES)
        if problem:
            raise UnreadableDocument(f"status {problem}")
        if not isinstance(doc, dict):
            raise UnreadableDocument("status is not a JSON object")
        return cls.from_json(doc)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> StatusDocument:
        """Each field read on its own (see the module docstring); never raises."""
        models: dict[str, ModelStatus] = {}
        for name, model in (read_table(doc.get("models")) or {}).items():
            if len(models) == MAX_MODELS:
                break
            if isinstance(model, dict) and 0 < len(name) <= MAX_NAME_CHARS:
                models[printable(name)] = ModelStatus.from_json(model)
        bench_job = doc.get("bench_job")
        return cls(
            device=clean_text(doc.get("device")),
            fleet=clean_text(doc.get("fleet")),
            group=clean_text(doc.get("group")),
            profile=clean_text(doc.get("profile")),
            agent_version=clean_text(doc.get("agent_version")),
            uptime_s=read_finite(doc.get("uptime_s")),
            cpu_percent=read_finite(doc.get("cpu_percent")),
            memory_rss_bytes=read_count(doc.get("memory_rss_bytes")),
            disk_free_bytes=read_count(doc.get("disk_free_bytes")),
            assignment_error=clean_text(doc.get("assignment_error")),
            bench_job=clean_text(bench_job) if isinstance(bench_job, str) else None,
            models=models,
            at=clean_text(doc.get("at")),
        )

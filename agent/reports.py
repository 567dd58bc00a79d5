"""What the device says about itself: the retained status it publishes (the wire contract's
``StatusDocument``, docs/protocol.md §6), the event it sends on each transition, what both count
in its metrics, and the local view ``edge-agent status`` prints from the state directory without
a broker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agent.config import AgentConfig
from agent.metrics import Metrics
from agent.serving.oip import version_label
from agent.sysinfo import free_disk_bytes, rss_bytes
from agent.update.machine import Event, Journal
from agent.update.store import ModelStore
from agent.update.transfer import TransferStats
from agent.update.update_state import Outcome
from agent.update.updater import ModelUpdater
from edge_sdk import __version__
from edge_sdk.core.wire.protocol import (
    RESTING_STATES,
    LastResult,
    ModelStatus,
    Probation,
    SourceTally,
    StatusDocument,
    TransferReport,
    UpdateResult,
    result_of,
)


def status_document(
    config: AgentConfig,
    updaters: Mapping[str, ModelUpdater],
    *,
    uptime_s: float,
    cpu_percent: float,
    assignment_error: str,
    bench_job: str | None,
) -> StatusDocument:
    """The device's status now: its identity from ``agent.toml``, its resources, and each
    model as it is served and updated."""
    return StatusDocument(
        device=config.device_id,
        fleet=config.fleet,
        group=config.group,
        profile=config.profile.id,
        agent_version=__version__,
        uptime_s=round(uptime_s, 1),
        cpu_percent=cpu_percent,
        memory_rss_bytes=rss_bytes(),
        disk_free_bytes=free_disk_bytes(config.state_dir),
        assignment_error=assignment_error,
        bench_job=bench_job,
        models={name: model_status(u) for name, u in updaters.items()},
        at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def model_status(u: ModelUpdater) -> ModelStatus:
    j = u.journal
    revoked, trust_note = u.served_trust()
    return ModelStatus(
        # What is actually served, never just what `current` names.
        version=u.slot.version,
        signed_by_revoked_key=revoked,
        trust_note=trust_note,
        state=j.state,
        target_version=j.version,
        serial=j.serial,
        floor=j.floor,
        reason=j.reason,
        last_result=None if u.outcome is None else last_result(u.outcome),
        last_transfer=None if u.last_transfer is None else transfer_report(u.last_transfer),
        inference=u.slot.figures(),
        # The health gate's view while in probation (and of the last one after it).
        probation=None
        if u.probation_figures is None
        else Probation(u.probation_figures, u.previous_figures),
    )


def last_result(o: Outcome) -> LastResult:
    return LastResult(o.version, o.result, o.reason, o.at)


def transfer_report(t: TransferStats) -> TransferReport:
    return TransferReport(
        chunks=t.chunks,
        fetched=t.fetched,
        fetched_bytes=t.fetched_bytes,
        cached=t.cached,
        reused=t.reused,
        # Where the fetched chunks came from: each mirror's base URL, or "broker".
        sources={source: SourceTally(chunks, size) for source, chunks, size in t.sources},
    )


def event_payload(device: str, model: str, journal: Journal, event: Event, at: float) -> bytes:
    """``devices/<id>/events``: one transition (or a refusal, with the state unchanged)."""
    event_report = {
        "device": device,
        "model": model,
        "event": str(event),
        "state": str(journal.state),
        "version": journal.version,
        "reason": journal.reason,
        "at": at,
    }
    return json.dumps(event_report, separators=(",", ":")).encode()  # compact, as status


def count_event(metrics: Metrics, model: str, journal: Journal, event: Event) -> None:
    """An update event in the metrics: the state now, an update started, a result reached."""
    metrics.set_state(model, journal.state)
    if event is Event.ASSIGNED:
        metrics.updates.labels(model).inc()
    elif event is Event.REFUSED:
        metrics.results.labels(model, UpdateResult.REFUSED).inc()
    elif journal.state in RESTING_STATES and event is not Event.ALREADY_SERVING:
        metrics.results.labels(model, result_of(journal.state)).inc()


def count_serving(metrics: Metrics, updaters: Mapping[str, ModelUpdater]) -> None:
    """Which version each model serves, in the metrics (scraped locally, connected or not)."""
    for name, u in updaters.items():
        loaded = u.slot.loaded
        label = None if loaded is None else version_label(loaded)
        metrics.set_serving(name, u.slot.version, label)


def local_status(config: AgentConfig) -> dict[str, Any]:
    """What ``edge-agent status`` prints: read from the state directory, no broker needed."""
    models: dict[str, Any] = {}
    for m in config.models:
        store = ModelStore(config.state_dir, m.name)
        journal = store.load_journal()
        last = journal.history[-1] if journal.history else None
        models[m.name] = {
            "version": store.current(),
            "installed": store.installed(),
            "state": str(journal.state),
            "target_version": journal.version,
            "floor": journal.floor,
            "reason": journal.reason,
            "restarts": journal.restarts,
            "last_event": last,
        }
    return {
        "device": config.device_id,
        "fleet": config.fleet,
        "profile": config.profile.id,
        "state_dir": str(config.state_dir),
        "models": models,
    }

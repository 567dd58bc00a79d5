"""``fleet status`` without the broker: devices (as ``edge_sdk.fleet.inventory`` parsed them) plus
enrolment records, filtered into table rows, a JSON document and a summary.

Everything here is pure: the caller passes the devices, the enrolment records and "now", so the
tests need no broker and no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from edge_sdk.core.bundle import check_name, format_version
from edge_sdk.core.wire.protocol import UNKNOWN_STATE, Figures, UpdateState
from edge_sdk.core.wire.topics import IDENTIFIER, check_identifier
from edge_sdk.core.wire.untrusted_json import clean_text, read_document
from edge_sdk.errors import InputError
from edge_sdk.fleet.inventory import DeviceView, ModelView

# The agent's update states (docs/protocol.md §9), and "unknown" for a state a device reported
# that this host does not know.
STATES = (*(str(state) for state in UpdateState), UNKNOWN_STATE)
ENROLLED_DIR = "devices"
# `fleet enroll` writes a few hundred bytes; a record is read (and trusted) no further.
MAX_RECORD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Enrolled:
    """An enrolment record (``<broker-dir>/devices/<id>.json``, written by ``fleet enroll``)."""

    device: str
    group: str = ""
    profile: str = ""


@dataclass(frozen=True)
class Entry:
    """One device as ``fleet status`` shows it: what it reported, or only its enrolment."""

    view: DeviceView
    seen: bool = True  # False: enrolled, but nothing from it ever reached the broker


@dataclass(frozen=True)
class Filters:
    group: str | None = None
    model: str | None = None
    state: str | None = None
    online: bool | None = None  # True: --online; False: --offline (not known to be online)
    device: str | None = None

    def check(self) -> Filters:
        """Bad filter values are the user's mistake: one line, exit 2, before connecting."""
        if self.group is not None:
            check_identifier(self.group, "--group")
        if self.device is not None:
            check_identifier(self.device, "--device")
        if self.model is not None:
            check_name(self.model)
        if self.state is not None and self.state not in STATES:
            raise InputError(f"--state {self.state!r} is not one of {', '.join(STATES)}")
        return self

    def device_matches(self, entry: Entry) -> bool:
        v = entry.view
        if self.device is not None and v.device != self.device:
            return False
        if self.group is not None and v.group != self.group:
            return False
        return self.online is None or (v.online is True) == self.online

    def model_matches(self, model: ModelView) -> bool:
        return (self.model is None or model.name == self.model) and (
            self.state is None or model.state == self.state
        )

    @property
    def selects_models(self) -> bool:
        return self.model is not None or self.state is not None


@dataclass(frozen=True)
class Row:
    """One table row: a device and one of its models (or the device alone, without models)."""

    entry: Entry
    model: ModelView | None


# -- inputs ---------------------------------------------------------------------------------


def load_enrolled(broker_dir: Path, fleet: str) -> dict[str, Enrolled]:
    """Enrolment records of ``fleet`` by device id; none when the directory does not exist. A
    record that does not parse still names its device (the file name), so it is listed, not
    hidden; a record that names another fleet is skipped."""
    directory = broker_dir / ENROLLED_DIR
    if not directory.is_dir():
        return {}
    found: dict[str, Enrolled] = {}
    for path in sorted(directory.glob("*.json")):
        if not IDENTIFIER.match(path.stem):
            continue
        try:
            with path.open("rb") as f:
                doc, _problem = read_document(f.read(MAX_RECORD_BYTES + 1), MAX_RECORD_BYTES)
        except OSError:
            doc = {}
        doc = doc if isinstance(doc, dict) else {}
        other = doc.get("fleet")
        if isinstance(other, str) and other != fleet:
            continue
        found[path.stem] = Enrolled(
            path.stem, clean_text(doc.get("group")), clean_text(doc.get("profile"))
        )
    return found


def merge(devices: Mapping[str, DeviceView], enrolled: Mapping[str, Enrolled]) -> list[Entry]:
    """Reported devices, plus enrolled ones never heard from; sorted by device id. A device's
    own report wins; the enrolment only fills in a group or profile it has not reported."""
    entries: dict[str, Entry] = {}
    for name, view in devices.items():
        record = enrolled.get(name)
        if record is not None and (not view.group or not view.profile):
            view = _with_identity(view, view.group or record.group, view.profile or record.profile)
        entries[name] = Entry(view)
    for name, record in enrolled.items():
        if name not in entries:
            entries[name] = Entry(
                _with_identity(DeviceView(name), record.group, record.profile), False
            )
    return [entries[name] for name in sorted(entries)]


def _with_identity(view: DeviceView, group: str, profile: str) -> DeviceView:
    # replace() keeps every other field the device reported (its benchmark job included).
    return replace(view, group=group, profile=profile)


# -- selection ------------------------------------------------------------------------------


def select(entries: Iterable[Entry], filters: Filters) -> list[Row]:
    """One row per device and model, filtered; a device without models is one row, and drops
    out when the filters ask about models."""
    rows: list[Row] = []
    for entry in entries:
        if not filters.device_matches(entry):
            continue
        models = [entry.view.models[n] for n in sorted(entry.view.models)]
        if not models:
            if not filters.selects_models:
                rows.append(Row(entry, None))
            continue
        rows += [Row(entry, m) for m in models if filters.model_matches(m)]
    return rows


def entries_of(rows: Iterable[Row]) -> list[Entry]:
    """The devices behind ``rows``, once each, in order."""
    seen: dict[str, Entry] = {}
    for row in rows:
        seen.setdefault(row.entry.view.device, row.entry)
    return list(seen.values())


# -- output ---------------------------------------------------------------------------------


def presence(entry: Entry) -> str:
    if not entry.seen:
        return "never seen"
    return {True: "online", False: "offline", None: "unknown"}[entry.view.online]


def age(at: str, now: datetime) -> str:
    """``12s ago`` for a report time (``YYYY-MM-DDTHH:MM:SSZ``); ``-`` when it cannot be read."""
    when = parse_at(at)
    if when is None:
        return "-"
    # A device clock ahead of this host's would give a negative age; it is "now" to a reader.
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def parse_at(at: str) -> datetime | None:
    try:
        return datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def summarize(rows: Iterable[Row]) -> dict[str, Any]:
    rows = list(rows)
    entries = entries_of(rows)
    by_presence = Counter(presence(e) for e in entries)
    by_state = Counter(r.model.state for r in rows if r.model is not None)
    by_version: dict[str, Counter[str]] = {}
    for r in rows:
        if r.model is not None and r.model.version is not None:
            by_version.setdefault(r.model.name, Counter())[str(r.model.version)] += 1
    return {
        "devices": len(entries),
        "online": by_presence["online"],
        "offline": by_presence["offline"],
        "unknown": by_presence["unknown"],
        "never_seen": by_presence["never seen"],
        "problems": sum(1 for e in entries if e.view.problem),
        "by_state": dict(sorted(by_state.items())),
        "by_version": {m: dict(sorted(c.items())) for m, c in sorted(by_version.items())},
    }


def summary_line(summary: Mapping[str, Any]) -> str:
    parts = [
        f"{summary['devices']} device{'' if summary['devices'] == 1 else 's'}: "
        f"{summary['online']} online, {summary['offline']} offline"
    ]
    for key, label in (("unknown", "presence unknown"), ("never_seen", "never seen")):
        if summary[key]:
            parts[0] += f", {summary[key]} {label}"
    if summary["problems"]:
        parts.append(f"{summary['problems']} with an unreadable status")
    if summary["by_state"]:
        parts.append(", ".join(f"{n} {s}" for s, n in summary["by_state"].items()))
    for model, versions in summary["by_version"].items():
        parts.append(
            f"{model} " + ", ".join(f"v{format_version(int(v))} x{n}" for v, n in versions.items())
        )
    return "; ".join(parts)


def to_json(rows: Iterable[Row]) -> dict[str, Any]:
    """``{"devices": [...], "summary": {...}}``; each device lists only its selected models."""
    rows = list(rows)
    models: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.model is not None:
            models.setdefault(r.entry.view.device, {})[r.model.name] = _model_json(r.model)
    devices = []
    for entry in entries_of(rows):
        v = entry.view
        devices.append(
            {
                "device": v.device,
                "group": v.group,
                "profile": v.profile,
                "online": v.online,
                "presence": presence(entry),
                "seen": entry.seen,
                "last_seen": v.at or None,
                "assignment_error": v.assignment_error,
                "problem": v.problem,
                "bench_job": v.bench_job or None,
                "models": models.get(v.device, {}),
            }
        )
    return {"devices": devices, "summary": summarize(rows)}


def _model_json(m: ModelView) -> dict[str, Any]:
    last = (
        {"result": m.last_result, "version": m.last_result_version, "reason": m.last_result_reason}
        if m.last_result
        else None
    )
    return {
        "version": m.version,
        # What a person reads; the integers are what devices and scripts compare.
        "version_label": _label(m.version),
        "state": m.state,
        "target_version": m.target_version,
        "target_version_label": _label(m.target_version),
        "serial": m.serial,
        "reason": m.reason,
        "last_result": last,
        "inference": _figures_json(m.inference),
    }


def _label(version: int | None) -> str | None:
    return None if version is None else format_version(version)


def _figures_json(f: Figures | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {
        "count": f.count,
        "errors": f.errors,
        "error_rate": f.error_rate,
        "p50_ms": f.p50_ms,
        "p95_ms": f.p95_ms,
    }


_STATE_STYLE = {
    UpdateState.COMMITTED: "green",
    UpdateState.FAILED: "red",
    UpdateState.ROLLED_BACK: "yellow",
    UNKNOWN_STATE: "red",
}
# States whose reason is what an operator reads first (a failure, a rollback's cause).
_ENDED_BADLY = (UpdateState.FAILED, UpdateState.ROLLED_BACK, UpdateState.ROLLING_BACK)
_PRESENCE_STYLE = {"online": "green", "offline": "red", "never seen": "yellow"}


def table(rows: Iterable[Row], now: datetime) -> Table:
    t = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("device", "group", "profile", "model", "version", "state"):
        t.add_column(column)
    for column in ("requests", "errors", "p95 ms"):
        t.add_column(column, justify="right")
    t.add_column("presence", no_wrap=True)
    t.add_column("last seen", no_wrap=True)
    for r in rows:
        v, m = r.entry.view, r.model
        figures = m.inference if m is not None else None
        where = presence(r.entry)
        state = m.state if m is not None else ("unreadable" if v.problem else "-")
        # Group, profile and model names come from devices' own reports: never markup.
        t.add_row(
            v.device,
            escape(v.group or "-"),
            escape(v.profile or "-"),
            escape(m.name) if m is not None else "-",
            format_version(m.version) if m is not None and m.version is not None else "-",
            f"[{_STATE_STYLE.get(state, 'default')}]{state}[/]",
            str(figures.count) if figures is not None else "-",
            f"{figures.error_rate:.1%}" if figures is not None else "-",
            f"{figures.p95_ms:.2f}" if figures is not None and figures.count else "-",
            f"[{_PRESENCE_STYLE.get(where, 'default')}]{where}[/]",
            age(v.at, now) if r.entry.seen else "never",
        )
    return t


def notes(rows: Iterable[Row]) -> list[str]:
    """``<device> <model>: <note>`` for the rows that have one: printed under the table, where
    a long reason reads whole instead of wrapping in a narrow column."""
    found = []
    for r in rows:
        text = note(r)
        if text:
            where = f"{r.entry.view.device} {r.model.name}" if r.model else r.entry.view.device
            found.append(f"{where}: {text}")
    # Benchmark jobs in flight (fleet bench, build --measure-on): one line per device.
    for entry in entries_of(rows):
        if entry.view.bench_job:
            found.append(f"{entry.view.device}: benchmark job {entry.view.bench_job} in flight")
    return found


def note(row: Row) -> str:
    """What an operator should read first: an unreadable status, the model's failure reason,
    a refused assignment."""
    v, m = row.entry.view, row.model
    if v.problem:
        return v.problem
    if m is not None and m.reason and m.state in _ENDED_BADLY:
        return m.reason
    if m is not None and m.target_version not in (None, m.version) and not m.resting:
        return f"updating to {format_version(m.target_version)}"
    return v.assignment_error

"""What the fleet looks like from the broker: every device's retained status and presence.

The devices are the source of truth about themselves (``devices/<id>/status`` and
``devices/<id>/presence``, docs/protocol.md §6); this module turns those messages into typed,
read-only views. Parsing is pure (``parse_status``, ``DeviceView.from_messages``) and never
trusts the payload's shape: a device that publishes garbage shows up as a device with an
unreadable status, not as an exception in the operator's tools.

``FleetWatch`` is the I/O side: one MQTT 5 subscription to ``devices/+/status`` and
``devices/+/presence`` kept up to date for as long as a command runs (``fleet rollout``), and
``sync()`` to know every retained message has arrived (``fleet status``).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_sdk.core.jsondepth import too_deep
from edge_sdk.core.topics import IDENTIFIER, Topics
from edge_sdk.errors import TransferError
from edge_sdk.fleet.session import BrokerAddress, OperatorSession

# Resting states of a device's update machine (agent/update/machine.py): nothing in flight.
RESTING = frozenset({"idle", "committed", "rolled_back", "failed"})

# What a device's report may be (docs/protocol.md §6). A real status is a few KB (about 1 KB
# per model); anything past these limits is that device's "problem", never the fleet's.
MAX_STATUS_BYTES = 256 * 1024
MAX_PRESENCE_BYTES = 1024
MAX_DEPTH = 32  # the agent's status nests 5 deep
MAX_MODELS = 256
MAX_NAME_CHARS = 128
MAX_TEXT_CHARS = 2048  # a reason, group, profile, time: longer text is cut here
MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class Figures:
    """One version's serving figures as a device reports them."""

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
            count=_int(doc.get("count")),
            errors=_int(doc.get("errors")),
            error_rate=_float(doc.get("error_rate")),
            p50_ms=_float(latency.get("p50")),
            p95_ms=_float(latency.get("p95")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "latency_ms": {"p50": self.p50_ms, "p95": self.p95_ms},
        }


@dataclass(frozen=True)
class ModelView:
    """One model on one device (``models.<name>`` of its status)."""

    name: str
    version: int | None
    state: str
    target_version: int | None = None
    serial: int = 0
    reason: str = ""
    last_result: str = ""  # committed, failed, rolled_back, refused, or "" before any
    last_result_version: int | None = None
    last_result_reason: str = ""
    inference: Figures | None = None
    probation: Figures | None = None
    previous: Figures | None = None  # the version it replaced, as probation saw it

    @property
    def resting(self) -> bool:
        return self.state in RESTING


@dataclass(frozen=True)
class DeviceView:
    device: str
    online: bool | None = None  # None: no presence message seen
    group: str = ""
    profile: str = ""
    at: str = ""  # the status report's own time (UTC); "" before any report
    models: Mapping[str, ModelView] = field(default_factory=dict)
    assignment_error: str = ""
    problem: str = ""  # why the status could not be read, if it could not
    bench_job: str = ""  # the benchmark job the device is running (edge_sdk.core.bench_job)
    received: float = 0.0  # when this host last heard from the device (wall clock)

    def model(self, name: str) -> ModelView | None:
        return self.models.get(name)


def parse_status(device: str, payload: bytes | bytearray) -> DeviceView:
    """A device's retained status; never raises (a bad report is a ``problem``)."""
    if not payload:
        return DeviceView(device)
    doc, problem = read_document(payload, MAX_STATUS_BYTES)
    if problem:
        return DeviceView(device, problem=f"status {problem}")
    if not isinstance(doc, dict):
        return DeviceView(device, problem="status is not a JSON object")
    models: dict[str, ModelView] = {}
    raw_models = doc.get("models")
    for name, m in (raw_models if isinstance(raw_models, dict) else {}).items():
        if len(models) == MAX_MODELS:
            break
        if isinstance(m, dict) and 0 < len(name) <= MAX_NAME_CHARS:
            models[_text(name)] = _parse_model(_text(name), m)
    return DeviceView(
        device,
        group=clean_text(doc.get("group")),
        profile=clean_text(doc.get("profile")),
        at=clean_text(doc.get("at")),
        models=models,
        assignment_error=clean_text(doc.get("assignment_error")),
        bench_job=clean_text(doc.get("bench_job")),
    )


def read_document(payload: bytes | bytearray, limit: int) -> tuple[object, str]:
    """``(document, "")`` or ``(None, what is wrong with it)``; never raises.

    What a device (or a file) sends is bounded before it is parsed: ``limit`` bytes, nesting
    at most ``MAX_DEPTH`` deep (``json.loads`` would recurse once per level and raise
    ``RecursionError`` deep down), UTF-8, and plain JSON numbers (no ``NaN``/``Infinity``; an
    integer of thousands of digits is refused by Python itself).
    """
    if len(payload) > limit:
        return None, f"is {len(payload)} bytes, over the {limit} byte limit"
    if too_deep(bytes(payload), MAX_DEPTH):
        return None, f"nests deeper than {MAX_DEPTH} levels"
    try:
        return json.loads(bytes(payload).decode(), parse_constant=_no_constant), ""
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except (ValueError, RecursionError) as e:  # JSONDecodeError, huge ints, NaN
        # Python's own advice on long integers ("use sys.set_...") is not for the operator.
        return None, f"is not JSON: {_text(str(e).split('; use ')[0])[:200]}"


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _parse_model(name: str, m: Mapping[str, Any]) -> ModelView:
    last = _table(m.get("last_result"))
    probation = _table(m.get("probation"))
    return ModelView(
        name=name,
        version=_opt_int(m.get("version")),
        state=clean_text(m.get("state")) or "unknown",
        target_version=_opt_int(m.get("target_version")),
        serial=_int(m.get("serial")),
        reason=clean_text(m.get("reason")),
        last_result=clean_text(last.get("result")),
        last_result_version=_opt_int(last.get("version")),
        last_result_reason=clean_text(last.get("reason")),
        inference=Figures.parse(m.get("inference")),
        probation=Figures.parse(probation.get("figures")),
        previous=Figures.parse(probation.get("previous_version")),
    )


def parse_presence(payload: bytes | bytearray) -> bool | None:
    """A device's retained presence (``{"online": true}``); None when it says nothing
    readable. Never raises."""
    doc, _problem = read_document(payload, MAX_PRESENCE_BYTES)
    online = doc.get("online") if isinstance(doc, dict) else None
    return online if isinstance(online, bool) else None


def _table(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def clean_text(value: object) -> str:
    """A device's text field for display: a string, cut to ``MAX_TEXT_CHARS``, its control
    characters replaced; "" for anything else."""
    return _text(value[:MAX_TEXT_CHARS]) if isinstance(value, str) else ""


# C0 and C1 controls, DEL, and lone surrogates (JSON's "\ud800" decodes to one, which no
# terminal or UTF-8 encoder takes): a device's text reaches the operator's terminal.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _text(value: str) -> str:
    return _UNPRINTABLE.sub("\N{REPLACEMENT CHARACTER}", value)


def _int(value: object) -> int:
    found = _opt_int(value)
    return 0 if found is None else found


def _opt_int(value: object) -> int | None:
    """A version, serial or count: a non-negative 64-bit integer, or nothing."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT:
        return value
    return None


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) else 0.0


class FleetWatch(OperatorSession):
    """``with FleetWatch(address, topics) as watch: watch.sync(); watch.devices()``.

    Subscribes at QoS 0: the messages are retained state, not events, so the newest one is all
    that matters, and QoS 0 keeps the broker's QoS 1 in-flight window from holding a large
    fleet's retained messages back behind ``sync()``.
    """

    def __init__(
        self, address: BrokerAddress, topics: Topics, client_id: str, *, timeout: float = 30.0
    ) -> None:
        super().__init__(address, client_id, timeout=timeout)
        self._topics = topics
        self._lock = threading.Lock()
        self._status: dict[str, DeviceView] = {}
        self._presence: dict[str, bool | None] = {}
        self._received: dict[str, float] = {}
        self._changed = threading.Condition(self._lock)
        self._subacks: set[int] = set()
        self._sync_seq = 0
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    def __enter__(self) -> FleetWatch:
        self._open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._close()

    def _on_session(self, client: mqtt.Client) -> None:
        # Every (re)connect subscribes again: the broker re-sends the retained state.
        devices = f"{self._topics.root}/devices/+"
        client.subscribe([(f"{devices}/status", 0), (f"{devices}/presence", 0)])

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, mid: int, _rc: list[ReasonCode], _p: object
    ) -> None:
        with self._changed:
            self._subacks.add(mid)
            self._changed.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.removeprefix(f"{self._topics.root}/devices/").split("/")
        if len(parts) != 2 or not IDENTIFIER.match(parts[0]):
            return
        device, kind = parts
        with self._changed:
            try:
                if kind == "status":
                    self._status[device] = parse_status(device, msg.payload)
                elif kind == "presence":
                    self._presence[device] = parse_presence(msg.payload) if msg.payload else None
                else:
                    return
            except Exception as e:
                # The parsers never raise; should one ever, an exception here would end paho's
                # network thread and every device after this one would go unread (sync() then
                # waits out its timeout). One device's report is that device's problem only.
                self._status[device] = DeviceView(
                    device, problem=f"{kind} could not be read ({type(e).__name__})"
                )
            self._received[device] = time.time()
            self._changed.notify_all()

    # -- reading ---------------------------------------------------------------------------

    def sync(self) -> None:
        """Return once every retained message the broker held at this moment has arrived.

        The broker answers a connection's packets in order and sends a subscription's
        retained messages before that SUBSCRIBE's SUBACK is followed by anything else, so the
        SUBACK of a later SUBSCRIBE (to a topic nobody writes) means the earlier ones are in.
        """
        with self._lock:
            self._sync_seq += 1
            probe = f"{self._topics.root}/devices/_sync/{self._sync_seq}"
        result, mid = self._client.subscribe(probe, 0)
        with self._changed:
            answered = result == mqtt.MQTT_ERR_SUCCESS and self._changed.wait_for(
                lambda: mid in self._subacks, self._timeout
            )
            self._subacks.discard(mid or 0)
        if not answered:
            raise TransferError(f"the broker did not answer a SUBSCRIBE in {self._timeout:g} s")
        self._client.unsubscribe(probe)

    def devices(self) -> dict[str, DeviceView]:
        """Every device heard of, by id: status and presence merged."""
        with self._lock:
            names = set(self._status) | set(self._presence)
            views: dict[str, DeviceView] = {}
            for name in sorted(names):
                base = self._status.get(name, DeviceView(name))
                views[name] = DeviceView(
                    name,
                    online=self._presence.get(name),
                    group=base.group,
                    profile=base.profile,
                    at=base.at,
                    models=base.models,
                    assignment_error=base.assignment_error,
                    problem=base.problem,
                    bench_job=base.bench_job,
                    received=self._received.get(name, 0.0),
                )
            return views

    def wait_change(self, timeout: float) -> None:
        """Block until any status or presence arrives, or ``timeout`` seconds pass."""
        with self._changed:
            self._changed.wait(timeout)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

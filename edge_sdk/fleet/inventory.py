"""What the fleet looks like from the broker: every device's retained status and presence.

The devices are the source of truth about themselves (``devices/<id>/status`` and
``devices/<id>/presence``, docs/protocol.md §6); this module turns those messages into typed,
read-only views. The documents themselves are read by ``edge_sdk.core.wire.protocol``, the contract
the agent writes them with, which never trusts the payload's shape; ``parse_status`` (pure)
makes a device that publishes garbage show up as a device with an unreadable status, not as an
exception in the operator's tools.

``FleetWatch`` is the I/O side: one MQTT 5 subscription to ``devices/+/status`` and
``devices/+/presence`` kept up to date for as long as a command runs (``fleet rollout``), and
``sync()`` to know every retained message has arrived (``fleet status``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_sdk.core.wire.broker_address import BrokerAddress
from edge_sdk.core.wire.protocol import (
    RESTING_STATES,
    Figures,
    ModelStatus,
    StatusDocument,
    UnreadableDocument,
    parse_presence,
)
from edge_sdk.core.wire.topics import IDENTIFIER, Topics
from edge_sdk.core.wire.untrusted_json import read_document
from edge_sdk.errors import BrokerUnavailableError
from edge_sdk.fleet.session import OperatorSession

# Figures, parse_presence and read_document are the protocol's, named here too: the fleet's
# readers of what devices publish are found in this module.
__all__ = [
    "DeviceView",
    "Figures",
    "FleetWatch",
    "ModelView",
    "parse_presence",
    "parse_status",
    "read_document",
    "utc_now",
]


@dataclass(frozen=True)
class ModelView:
    """One model on one device (``models.<name>`` of its status), as the fleet's tools use it."""

    name: str
    version: int | None
    state: str
    target_version: int | None = None
    serial: int = 0
    reason: str = ""
    last_result: str = ""  # an UpdateResult (committed, failed, ...), or "" before any
    last_result_version: int | None = None
    last_result_reason: str = ""
    inference: Figures | None = None
    probation: Figures | None = None
    previous: Figures | None = None  # the version it replaced, as probation saw it

    @property
    def resting(self) -> bool:
        return self.state in RESTING_STATES

    @classmethod
    def of(cls, name: str, m: ModelStatus) -> ModelView:
        last, probation = m.last_result, m.probation
        return cls(
            name=name,
            version=m.version,
            state=m.state,
            target_version=m.target_version,
            serial=m.serial,
            reason=m.reason,
            last_result="" if last is None else last.result,
            last_result_version=None if last is None else last.version,
            last_result_reason="" if last is None else last.reason,
            inference=m.inference,
            probation=None if probation is None else probation.figures,
            previous=None if probation is None else probation.previous_version,
        )


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
    bench_job: str = ""  # the benchmark job the device is running (edge_sdk.core.wire.bench_job)
    received: float = 0.0  # when this host last heard from the device (wall clock)

    def model(self, name: str) -> ModelView | None:
        return self.models.get(name)


def parse_status(device: str, payload: bytes | bytearray) -> DeviceView:
    """A device's retained status; never raises (a bad report is a ``problem``)."""
    if not payload:
        return DeviceView(device)
    try:
        doc = StatusDocument.parse(payload)
    except UnreadableDocument as e:
        return DeviceView(device, problem=str(e))
    return DeviceView(
        device,
        group=doc.group,
        profile=doc.profile,
        at=doc.at,
        models={name: ModelView.of(name, m) for name, m in doc.models.items()},
        assignment_error=doc.assignment_error,
        bench_job=doc.bench_job or "",
    )


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
            raise BrokerUnavailableError(
                f"the broker did not answer a SUBSCRIBE in {self._timeout:g} s"
            )
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

"""What the fleet benchmark sees of the broker's traffic and of each device's update.

``TopicMeter`` counts every MQTT PUBLISH that the clients in this process send to the broker
(in) and receive from it (out), per topic class and per role of the client, from paho's own
send and receive paths, so the broker's bytes per device update can be split into assignments,
status reports, TUF metadata, chunks, presence and events, and the watcher's copies. Agents
run as threads for it to see them (agent processes are outside this process); its totals are
compared with the broker's own ``$SYS`` byte counters, the rest being MQTT's other packets.

``UpdateClock`` reads the agents' events (``devices/+/events``, each stamped ``at`` by the
device) so that each wave's time can be split into transfer, verification, load and
self-test, probation and the gating around them.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from paho.mqtt import client as paho

# Topic classes, in the order a report lists them; matched on the topic below <prefix>/<fleet>/.
CLASSES = ("assignment", "status", "presence", "events", "tuf-metadata", "chunks", "other")


def topic_class(topic: str) -> str:
    parts = topic.split("/")
    if topic.startswith("$SYS/"):
        return "other"
    rest = parts[2:]
    if rest[:1] == ["desired"]:
        return "assignment"
    if rest[:2] == ["repo", "metadata"]:
        return "tuf-metadata"
    if rest[:2] == ["repo", "chunks"]:
        return "chunks"
    if rest[:1] == ["devices"] and len(rest) == 3 and rest[2] in ("status", "presence", "events"):
        return rest[2]
    return "other"


def publish_size(topic: int, payload: int, qos: int, mqtt5: bool) -> int:
    """A PUBLISH packet's bytes on the wire: fixed header, topic, packet id, properties."""
    remaining = 2 + topic + (2 if qos else 0) + (1 if mqtt5 else 0) + payload
    length = 1
    while remaining >= 128**length:
        length += 1
    return 1 + length + remaining


def role_of(client_id: str) -> str:
    if client_id.startswith("dev-"):
        return "agent"
    if client_id.startswith("bench-watch"):
        return "watcher"
    if client_id.startswith("bench-operator"):
        return "operator"
    return "bench"


class TopicMeter:
    """Counts (messages, bytes) per (direction, topic class, role) while installed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])

    def _add(self, direction: str, client: Any, topic: str, payload: int, qos: int) -> None:
        raw_id = client._client_id
        cid = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        mqtt5 = client._protocol == paho.MQTTv5
        size = publish_size(len(topic.encode()), payload, qos, mqtt5)
        with self._lock:
            row = self.counts[(direction, topic_class(topic), role_of(cid))]
            row[0] += 1
            row[1] += size

    @contextmanager
    def installed(self) -> Iterator[TopicMeter]:
        send, receive = paho.Client._send_publish, paho.Client._handle_on_message
        meter = self

        def counted_send(
            client: Any,
            mid: int,
            topic: bytes,
            payload: Any = b"",
            qos: int = 0,
            *args: Any,
            **kwargs: Any,
        ) -> Any:
            meter._add("in", client, topic.decode(errors="replace"), len(payload or b""), qos)
            return send(client, mid, topic, payload, qos, *args, **kwargs)

        def counted_receive(client: Any, message: Any) -> None:
            meter._add("out", client, message.topic, len(message.payload), message.qos)
            receive(client, message)

        paho.Client._send_publish = counted_send  # type: ignore[method-assign,assignment]
        paho.Client._handle_on_message = counted_receive  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            paho.Client._send_publish = send  # type: ignore[method-assign]
            paho.Client._handle_on_message = receive  # type: ignore[method-assign]

    def snapshot(self) -> dict[tuple[str, str, str], tuple[int, int]]:
        with self._lock:
            return {k: (v[0], v[1]) for k, v in self.counts.items()}


def difference(
    after: dict[tuple[str, str, str], tuple[int, int]],
    before: dict[tuple[str, str, str], tuple[int, int]],
) -> dict[tuple[str, str, str], tuple[int, int]]:
    out = {}
    for key, (m, b) in after.items():
        m0, b0 = before.get(key, (0, 0))
        if m - m0 or b - b0:
            out[key] = (m - m0, b - b0)
    return out


def breakdown_table(
    title: str,
    counted: dict[tuple[str, str, str], tuple[int, int]],
    devices: int,
    threads: int,
    sys_bytes: tuple[int, int] | None,
) -> list[str]:
    """Markdown rows: per topic class and direction (role), messages and KB per device; the
    bench's own observers (role ``bench``) are listed but not part of the product's figure.
    What agents send and receive is counted for the ``threads`` in this process; what the
    operator, the watcher and the observers see, for all ``devices``."""
    lines = [
        f"{title}: broker bytes per device update, by topic class (in: to the broker, out: from "
        "it; who sent or received)",
        "",
        "| topic class | direction (client) | messages per device | KB per device |",
        "|---|---|---:|---:|",
    ]
    product = 0.0
    keys = sorted(counted, key=lambda k: (CLASSES.index(k[1]), k[0], k[2]))
    for direction, cls, role in keys:
        messages, size = counted[(direction, cls, role)]
        per = threads if role == "agent" else devices
        if role != "bench":
            product += size / per
        lines.append(
            f"| {cls} | {direction} ({role}) | {messages / per:.1f} | {size / per / 1e3:.2f} |"
        )
    lines.append(f"| **counted PUBLISH, product clients** | | | **{product / 1e3:.1f}** |")
    if sys_bytes is not None:
        received, sent = (b / devices / 1e3 for b in sys_bytes)  # all clients, all packets
        lines.append(
            f"| broker `$SYS` bytes, all packets: received {received:.1f} + sent {sent:.1f} "
            f"| | | {received + sent:.1f} |"
        )
    return lines


# -- where a wave's time goes --------------------------------------------------------------

# The agent's events in an update's order (agent/update/machine.py), and the phase each one ends.
PHASES = (
    ("assigned", "delivery"),
    ("downloaded", "transfer"),
    ("verified", "verification"),
    ("selftest_passed", "load+self-test"),
    ("switched", "switch"),
    ("probation_passed", "probation"),
)


class UpdateClock:
    """Each device's update events with the device's own timestamps (``at``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: dict[str, list[tuple[str, int | None, float]]] = defaultdict(list)

    def on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            doc = json.loads(msg.payload)
            row = (str(doc["event"]), doc.get("version"), float(doc["at"]))
            device = str(doc["device"])
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self.events[device].append(row)

    def update_of(self, device: str, version: int) -> dict[str, float]:
        """event -> time for ``device``'s update to ``version`` (first of each)."""
        with self._lock:
            rows = list(self.events.get(device, ()))
        seen: dict[str, float] = {}
        for event, v, at in rows:
            if v == version and event not in seen:
                seen[event] = at
        return seen


@dataclass
class WaveTime:
    size: int
    wave_s: float
    phases: dict[str, float]  # mean seconds per device in each phase
    slowest_s: float  # the wave's slowest device, assigned -> committed
    gating_s: float  # the wave's time outside its slowest device's update


def wave_times(
    clock: UpdateClock,
    waves: Sequence[Sequence[str]],
    published: Sequence[float],
    passed: Sequence[float],
    version: int,
) -> list[WaveTime]:
    """Per wave: the mean of each phase over its devices; ``published`` and ``passed`` are
    wall-clock times of the wave's assignments and of the controller's verdict."""
    out = []
    for devices, start, end in zip(waves, published, passed, strict=False):
        sums: dict[str, float] = defaultdict(float)
        slowest = 0.0
        counted = 0
        for device in devices:
            seen = clock.update_of(device, version)
            if "probation_passed" not in seen:
                continue
            counted += 1
            previous = start
            for event, phase in PHASES:
                if event in seen:
                    sums[phase] += max(0.0, seen[event] - previous)
                    previous = seen[event]
            slowest = max(slowest, seen["probation_passed"] - start)
        phases = {phase: sums[phase] / max(counted, 1) for _e, phase in PHASES}
        out.append(WaveTime(len(devices), end - start, phases, slowest, end - start - slowest))
    return out

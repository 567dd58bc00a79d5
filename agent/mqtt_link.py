"""The agent's one MQTT 5 connection (paho-mqtt 2.x): TLS with a client certificate, a
persistent session, a Last Will, reconnection with backoff and jitter, and one-shot reads of
retained messages (how TUF metadata and chunks are fetched).

A retained read subscribes to the exact topic and unsubscribes as soon as the SUBACK arrives.
The broker queues a topic's retained message while it handles the SUBSCRIBE, so on the same
ordered connection it reaches us before the UNSUBACK; an UNSUBACK with no message before it
means the topic holds nothing (the "404" TUF's client needs to stop walking root versions), or
holds a message bigger than our Maximum Packet Size, which the broker drops rather than send.
Reads subscribe at QoS 0 so the broker's in-flight window for QoS 1 cannot hold a retained
message back behind the UNSUBACK.

A read is answered the moment its message arrives (a connection lost before the UNSUBACK does
not take it back), and waiting for one times out on *silence*: ``timeout`` seconds in which
not one byte came from the broker. A slow link that keeps delivering is never cut short.
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.backoff import Backoff
from agent.config import BrokerConfig
from edge_sdk.core.wire.mqtt_client import new_client, no_delay
from edge_sdk.errors import TransferError

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes, bool], None]  # topic, payload, retained
SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our subscriptions across a week offline


@dataclass
class _Read:
    topic: str
    done: threading.Event = field(default_factory=threading.Event)
    payload: bytes | None = None
    error: str = ""
    started: float = field(default_factory=time.monotonic)


_POLL_S = 0.25  # how often a waiting read looks at the link's last activity


class _Client(mqtt.Client):
    """paho's client, noting when the last byte arrived (even mid-packet): how a read tells
    a slow link that is still delivering from a silent one."""

    last_rx = 0.0

    def _sock_recv(self, bufsize: int) -> bytes:
        data = super()._sock_recv(bufsize)
        if data:
            self.last_rx = time.monotonic()
        return data


def _failed(read: _Read, why: str) -> _Read:
    read.error = why
    read.done.set()
    return read


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes


class MqttLink:
    """Owns the paho client and the thread that runs it. Thread-safe: ``publish`` and
    ``read_retained`` may be called from any thread; handlers run on the network thread and
    must only hand work over (queue it), never block."""

    def __init__(
        self,
        config: BrokerConfig,
        client_id: str,
        *,
        will: Will,
        online: Will,
        max_packet_bytes: int,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._will = will
        self._online = online
        self._max_packet = max_packet_bytes
        self._backoff = Backoff(
            config.reconnect_min_s, config.reconnect_max_s, rng or random.Random()
        )
        self._lock = threading.Lock()
        self._reads: dict[str, _Read] = {}
        self._batch_by_mid: dict[int, list[_Read]] = {}  # SUBSCRIBE/UNSUBSCRIBE id -> reads
        # Read topics a lost connection left subscribed in our persistent session: dropped
        # with one UNSUBSCRIBE on the next connection.
        self._stale: set[str] = set()
        self._subscriptions: dict[str, Handler] = {}
        self._stopping = threading.Event()
        self._down = threading.Event()  # paho's network thread has lost the connection
        self.connected = threading.Event()
        self.connections = 0  # successful CONNACKs, for tests and status
        self._thread: threading.Thread | None = None
        self._client_id = client_id
        scheme = "mqtts" if config.tls else "mqtt"
        host = f"[{config.host}]" if ":" in config.host else config.host
        self._where = f"{scheme}://{host}:{config.port}"
        self._client = self._make_client(client_id)

    def _make_client(self, client_id: str) -> _Client:
        client = new_client(
            self._config,
            client_id,
            client_class=_Client,
            reconnect_on_failure=False,  # our own loop reconnects, with jitter
        )
        client.will_set(self._will.topic, self._will.payload, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        return client

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly. A clean DISCONNECT suppresses the Will, so publish the offline
        presence ourselves first."""
        if self.connected.is_set():
            info = self._client.publish(self._will.topic, self._will.payload, qos=1, retain=True)
            with contextlib.suppress(RuntimeError):  # not sent in time: the Will covers it
                info.wait_for_publish(timeout=2.0)
        self._stopping.set()
        self._client.disconnect()
        self._down.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        # Endless-data defence: the broker must drop, not deliver, anything bigger.
        props.MaximumPacketSize = self._max_packet
        return props

    def _run(self) -> None:
        """Supervise the connection: connect, let paho's own network thread run it until it
        is lost, then wait a jittered backoff and reconnect.

        paho's reconnect loop has no jitter, so it is off (``reconnect_on_failure=False``) and
        paho's thread simply ends on a loss; running that thread (``loop_start``) rather than
        calling ``loop()`` from here matters for TLS: in threaded mode paho hands every write
        to its network thread, and an SSL socket must not be read and written from two threads
        at once.
        """
        first = True
        while not self._stopping.is_set():
            try:
                if first:
                    self._client.connect(
                        self._config.host,
                        self._config.port,
                        keepalive=self._config.keepalive_s,
                        clean_start=False,
                        properties=self._connect_properties(),
                    )
                    first = False
                else:
                    self._client.reconnect()
            except (OSError, ssl.SSLError, ValueError) as e:
                log.info("broker %s unreachable: %s", self._config.url, e)
                self._stopping.wait(self._backoff.next_delay())
                continue
            self._down.clear()
            self._client.loop_start()
            self._down.wait()
            self._client.loop_stop()  # joins paho's thread, which ends after a loss or stop
            if self._stopping.is_set():
                break
            self._stopping.wait(self._backoff.next_delay())

    # -- callbacks (network thread) ---------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            log.warning("broker refused the connection: %s", rc)
            self._down.set()  # back off and try again, as for a lost connection
            return
        self._backoff.reset()
        self.connections += 1
        no_delay(client)  # retained reads are chains of small request/answer packets
        client.publish(self._online.topic, self._online.payload, qos=1, retain=True)
        with self._lock:
            filters = list(self._subscriptions)
            stale, self._stale = sorted(self._stale - set(filters)), set()
        for topic_filter in filters:
            client.subscribe(topic_filter, qos=1)
        if stale:
            client.unsubscribe(stale)
        self.connected.set()
        # Said at every (re)connection: an operator reading the log sees where the device is
        # connected, and that it came back after a loss.
        log.info("connected to %s as %s", self._where, self._client_id)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if not self._stopping.is_set():
            log.warning("disconnected from %s (%s); reconnecting", self._where, rc)
        self._lost(f"disconnected ({rc})")
        self._down.set()

    def _lost(self, why: str) -> None:
        self.connected.clear()
        with self._lock:
            pending = list(self._reads.values())
            self._stale.update(r.topic for r in pending)
            self._stale.update(r.topic for batch in self._batch_by_mid.values() for r in batch)
            self._reads.clear()
            self._batch_by_mid.clear()
        for read in pending:
            read.error = why
            read.done.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            read = self._reads.get(msg.topic)
            handlers = [
                h for f, h in self._subscriptions.items() if mqtt.topic_matches_sub(f, msg.topic)
            ]
        if read is not None and msg.retain:
            read.payload = bytes(msg.payload)
            self._finish(read)  # answered: a loss before the UNSUBACK cannot take it back
        for handler in handlers:
            handler(msg.topic, bytes(msg.payload), bool(msg.retain))

    def _on_subscribe(
        self, client: mqtt.Client, _u: Any, mid: int, rcs: list[ReasonCode], _p: Any
    ) -> None:
        with self._lock:
            batch = self._batch_by_mid.pop(mid, None)
        if batch is None:
            return
        granted = []
        for read, rc in zip(batch, rcs, strict=False):
            if rc.is_failure:
                self._finish(read)  # not authorised to read it: the same as "nothing there"
            else:
                granted.append(read)
        if not granted:
            return
        _, unsub_mid = client.unsubscribe([r.topic for r in granted])
        if unsub_mid is not None:
            with self._lock:
                self._batch_by_mid[unsub_mid] = granted

    def _on_unsubscribe(self, _c: mqtt.Client, _u: Any, mid: int, _rcs: Any, _p: Any) -> None:
        with self._lock:
            batch = self._batch_by_mid.pop(mid, None)
        for read in batch or ():
            self._finish(read)

    def _finish(self, read: _Read) -> None:
        with self._lock:
            if self._reads.get(read.topic) is read:
                del self._reads[read.topic]
        read.done.set()

    # -- API ----------------------------------------------------------------------------------

    def subscribe(self, topic_filter: str, handler: Handler) -> None:
        """Keep ``topic_filter`` subscribed (again after every reconnect) and pass each message
        to ``handler``."""
        with self._lock:
            self._subscriptions[topic_filter] = handler
        if self.connected.is_set():
            self._client.subscribe(topic_filter, qos=1)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        """Queue a message. paho keeps QoS 1 messages across a reconnect of this session."""
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def start_reads(self, topics: list[str]) -> list[_Read]:
        """Begin retained reads of ``topics`` in one SUBSCRIBE (and later one UNSUBSCRIBE):
        two round trips for the whole batch. Wait on each result with :meth:`finish_read`."""
        reads = [_Read(t) for t in topics]
        if not self.connected.is_set():
            return [_failed(r, "not connected to the broker") for r in reads]
        with self._lock:
            busy = [r for r in reads if r.topic in self._reads]
            if busy or len(set(topics)) != len(topics):
                return [_failed(r, "a read of this topic is already in flight") for r in reads]
            for read in reads:
                self._reads[read.topic] = read
            rc, mid = self._client.subscribe([(t, 0) for t in topics])
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
                for read in reads:
                    del self._reads[read.topic]
                return [_failed(r, f"subscribe failed ({rc})") for r in reads]
            self._batch_by_mid[mid] = reads
        return reads

    def start_read(self, topic: str) -> _Read:
        return self.start_reads([topic])[0]

    @property
    def max_packet_bytes(self) -> int:
        """The Maximum Packet Size this link announces: the broker drops anything bigger."""
        return self._max_packet

    def finish_read(self, read: _Read, timeout: float) -> bytes | None:
        """The retained payload, ``None`` when the topic holds none (or one the broker would
        not send us), or ``TransferError`` when the broker is away or sent nothing at all for
        ``timeout`` seconds (the caller retries later)."""
        while not read.done.wait(_POLL_S):
            heard = max(read.started, self._client.last_rx)
            if time.monotonic() - heard >= timeout:
                with self._lock:
                    if self._reads.get(read.topic) is read:
                        del self._reads[read.topic]
                raise TransferError(
                    f"no answer from the broker for {read.topic}: nothing received for "
                    f"{timeout:g} s"
                )
        if read.error and read.payload is None:
            raise TransferError(f"reading {read.topic} failed: {read.error}")
        return read.payload

    def cancel(self, read: _Read) -> None:
        """Stop waiting for ``read``: a later read of its topic may start at once."""
        with self._lock:
            if self._reads.get(read.topic) is read:
                del self._reads[read.topic]

    def answered(self, read: _Read) -> bool:
        """Whether ``read`` already has its answer (its message, or that there is none)."""
        return read.done.is_set() and not (read.error and read.payload is None)

    def read_retained(self, topic: str, timeout: float) -> bytes | None:
        return self.finish_read(self.start_read(topic), timeout)

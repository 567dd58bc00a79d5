"""The operator's side of the broker: one short MQTT 5 session that publishes retained
messages and waits until the broker has acknowledged every one (QoS 1)."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from edge_sdk.core.wire.broker_address import BrokerAddress
from edge_sdk.core.wire.mqtt_client import new_client
from edge_sdk.errors import BrokerUnavailableError, InputError

__all__ = ["BrokerAddress", "OperatorLink", "OperatorSession"]


class OperatorSession:
    """One operator MQTT 5 session: the client, TLS with the operator's certificate, connect,
    and a refusal turned into one line. ``with`` connects and disconnects; subclasses add what
    they do on the connection (``_on_session`` runs on every successful CONNACK)."""

    def __init__(self, address: BrokerAddress, client_id: str, *, timeout: float = 30.0) -> None:
        self._address = address
        self._timeout = timeout
        self._connected = threading.Event()
        self._refused = ""
        try:
            client = new_client(address, client_id)
        except (ssl.SSLError, OSError) as e:
            # The files exist (BrokerAddress checked) but OpenSSL cannot use them.
            raise InputError(
                f"cannot load the TLS files (--ca/--client-cert/--client-key): {e}"
            ) from e
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client

    def _on_session(self, client: mqtt.Client) -> None:
        """Called on every successful CONNACK, on paho's network thread."""

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        if rc.is_failure:
            self._refused = str(rc)
        else:
            self._on_session(client)
        self._connected.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        if not self._connected.is_set():
            self._refused = f"disconnected before CONNACK ({rc}): certificate refused?"
            self._connected.set()

    def _open(self) -> None:
        a = self._address
        try:
            self._client.connect(a.host, a.port, keepalive=30)
        except (OSError, ssl.SSLError) as e:
            raise BrokerUnavailableError(
                f"cannot reach the broker at {a.host}:{a.port}: {e}"
            ) from e
        self._client.loop_start()
        if not self._connected.wait(self._timeout) or self._refused:
            self._client.loop_stop()
            raise BrokerUnavailableError(
                f"the broker at {a.host}:{a.port} refused the operator connection: "
                f"{self._refused or 'no CONNACK'}; check --client-cert/--client-key and the "
                "broker's ACL"
            )

    def _close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Self:
        self._open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._close()


class OperatorLink(OperatorSession):
    """``with OperatorLink(address, client_id) as link: link.publish(...)``; leaving the block
    waits for every acknowledgement, so a clean exit means the broker holds everything."""

    def __init__(self, address: BrokerAddress, client_id: str, *, timeout: float = 30.0) -> None:
        super().__init__(address, client_id, timeout=timeout)
        self._pending: list[mqtt.MQTTMessageInfo] = []
        self._client.max_inflight_messages_set(64)

    def publish(self, topic: str, payload: bytes, *, retain: bool = True) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BrokerUnavailableError(f"publishing {topic} failed: {mqtt.error_string(info.rc)}")
        self._pending.append(info)

    def wait(self, progress: Callable[[int, int], None] | None = None) -> None:
        total = len(self._pending)
        for done, info in enumerate(self._pending, start=1):
            try:
                info.wait_for_publish(self._timeout)
            except (RuntimeError, ValueError) as e:
                raise BrokerUnavailableError(f"the broker went away while publishing: {e}") from e
            if not info.is_published():
                raise BrokerUnavailableError(
                    f"the broker did not acknowledge a message in {self._timeout:g} s"
                )
            if progress is not None:
                progress(done, total)
        self._pending.clear()

    def __exit__(
        self, kind: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                self.wait()
        finally:
            self._close()

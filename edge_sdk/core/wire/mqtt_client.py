"""One way to build the MQTT client, for the device's session (``agent.mqtt_link``) and the
operator's (``edge_sdk.fleet.session``): paho-mqtt 2.x with its version 2 callbacks, MQTT 5, and
for an ``mqtts://`` address TLS that checks the broker against the fleet CA and presents the
client certificate. What each session does on the connection (Will, reconnection, retained reads;
acknowledged publishing) stays with it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import Any, TypeVar, overload

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge_sdk.core.wire.broker_address import BrokerAddress

ClientT = TypeVar("ClientT", bound=mqtt.Client)


def tls_context_args(address: BrokerAddress) -> dict[str, Any]:
    """paho's ``tls_set`` arguments for ``address``: its CA (the system's when it names none),
    the broker's host name checked, its client certificate and key if it has them."""
    return {
        "ca_certs": str(address.ca) if address.ca else None,
        "certfile": str(address.cert) if address.cert else None,
        "keyfile": str(address.key) if address.key else None,
        "cert_reqs": ssl.CERT_REQUIRED,
        "tls_version": ssl.PROTOCOL_TLS_CLIENT,
    }


@overload
def new_client(
    address: BrokerAddress, client_id: str, *, client_class: type[ClientT], **options: Any
) -> ClientT: ...


@overload
def new_client(address: BrokerAddress, client_id: str, **options: Any) -> mqtt.Client: ...


def new_client(
    address: BrokerAddress,
    client_id: str,
    *,
    client_class: type[mqtt.Client] = mqtt.Client,
    **options: Any,
) -> mqtt.Client:
    """An MQTT 5 client of ``client_class`` (paho's, or a subclass) for ``address``, TLS set up
    when it asks for TLS; ``options`` go to paho's constructor. OpenSSL's refusal of the TLS
    files (``ssl.SSLError``, ``OSError``) is the caller's to word."""
    client = client_class(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        **options,
    )
    if address.tls:
        client.tls_set(**tls_context_args(address))
    return client


def no_delay(client: mqtt.Client) -> None:
    """Disable Nagle on the client's socket, once connected: a retained read is a chain of
    small request/answer packets, each of which Nagle would hold back until the previous one
    is acknowledged."""
    sock = client.socket()
    if sock is not None and hasattr(sock, "setsockopt"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

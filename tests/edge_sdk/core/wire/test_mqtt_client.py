"""The MQTT client both sessions build (``edge_sdk.core.wire.mqtt_client``): MQTT 5 with paho's
version
2 callbacks, of the class the caller asks for, TLS only when the address asks for it. Connected
sessions are tested where they are used (tests/agent/test_mqtt_link.py, the fleet's broker
tests)."""

from __future__ import annotations

import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge_sdk.core.wire.broker_address import BrokerAddress
from edge_sdk.core.wire.mqtt_client import new_client, no_delay, tls_context_args


class Counting(mqtt.Client):
    pass


def test_a_plain_address_gives_an_mqtt5_client_without_tls() -> None:
    client = new_client(BrokerAddress.from_url("mqtt://localhost"), "dev-1")
    assert type(client) is mqtt.Client
    assert client.protocol == MQTTProtocolVersion.MQTTv5
    assert client._callback_api_version == CallbackAPIVersion.VERSION2
    assert client._client_id == b"dev-1" and client._ssl_context is None
    no_delay(client)  # not connected yet: nothing to set, nothing raised


def test_the_callers_class_and_options_are_used() -> None:
    address = BrokerAddress.from_url("mqtts://broker.example")
    client = new_client(address, "dev-1", client_class=Counting, reconnect_on_failure=False)
    assert type(client) is Counting and client._reconnect_on_failure is False
    assert client._ssl_context is not None  # the system's CAs: the address names none


def test_tls_arguments_name_the_addresses_files() -> None:
    files = {"ca": Path("/ca.pem"), "cert": Path("/c.pem"), "key": Path("/k.pem")}
    address = BrokerAddress.from_url("mqtts://broker.example", **files)
    assert tls_context_args(address) == {
        "ca_certs": "/ca.pem",
        "certfile": "/c.pem",
        "keyfile": "/k.pem",
        "cert_reqs": ssl.CERT_REQUIRED,
        "tls_version": ssl.PROTOCOL_TLS_CLIENT,
    }
    bare = tls_context_args(BrokerAddress.from_url("mqtts://broker.example"))
    assert (bare["ca_certs"], bare["certfile"], bare["keyfile"]) == (None, None, None)

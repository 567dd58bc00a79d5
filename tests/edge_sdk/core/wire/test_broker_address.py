"""The one broker address type: the URLs the device and the operator's tools accept and refuse
alike, the default ports, and the operator's one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_sdk.core.wire.broker_address import DEFAULT_PORTS, BrokerAddress, BrokerUrlError
from edge_sdk.errors import InputError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://10.0.0.5", ("10.0.0.5", 1883, False)),
        ("mqtts://broker.local", ("broker.local", 8883, True)),
        ("mqtts://Broker.Local:8884/", ("broker.local", 8884, True)),
        ("mqtt://[::1]:1999", ("::1", 1999, False)),
        ("mqtt://host.", ("host.", 1883, False)),
    ],
)
def test_a_url_gives_host_port_and_tls(url: str, expected: tuple[str, int, bool]) -> None:
    address = BrokerAddress.from_url(url)
    assert (address.host, address.port, address.tls) == expected
    assert (address.ca, address.cert, address.key) == (None, None, None)


@pytest.mark.parametrize(
    "url",
    [
        "http://x",
        "mqtt://",
        "mqtt://host/x",
        "mqtt://host?a=1",
        "mqtt://host#f",
        "mqtt://host:0",
        "mqtt://ho_st",
        "mqtt://-host",
        "mqtts:/host",
        "",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(BrokerUrlError) as info:
        BrokerAddress.from_url(url)
    assert not info.value.credentials


@pytest.mark.parametrize("url", ["mqtt://host:99999", "mqtt://host:x"])
def test_a_bad_port_carries_urllibs_reason(url: str) -> None:
    with pytest.raises(BrokerUrlError) as info:
        BrokerAddress.from_url(url)
    assert "Port" in info.value.detail


def test_credentials_are_refused_as_such() -> None:
    with pytest.raises(BrokerUrlError) as info:
        BrokerAddress.from_url("mqtt://u:p@h")
    assert info.value.credentials


@given(
    scheme=st.sampled_from(sorted(DEFAULT_PORTS)),
    host=st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}\Z"),
    port=st.none() | st.integers(1, 65535),
)
def test_any_well_formed_url_round_trips(scheme: str, host: str, port: int | None) -> None:
    url = f"{scheme}://{host}" + ("" if port is None else f":{port}")
    address = BrokerAddress.from_url(url)
    assert address.host == host
    assert address.port == (DEFAULT_PORTS[scheme] if port is None else port)
    assert address.tls == (scheme == "mqtts")


@given(st.text(max_size=40))
def test_any_text_is_an_address_or_a_broker_url_error(text: str) -> None:
    try:
        address = BrokerAddress.from_url(text)
    except BrokerUrlError:
        return
    assert 0 < address.port < 65536 and address.host


def test_the_operators_flags_are_one_line_each(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    address = BrokerAddress.parse("mqtts://b.lan", ca=ca)
    assert address == BrokerAddress("b.lan", 8883, True, ca)
    for kwargs, message in (
        ({"url": "http://x"}, "'http://x' is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"),
        ({"url": "mqtt://h:99999"}, "out of range"),
        ({"url": "mqtt://u:p@h"}, "must not carry credentials"),
        ({"url": "mqtts://h"}, "no --ca was given"),
        ({"url": "mqtt://h", "cert": ca}, "--client-cert and --client-key go together"),
        ({"url": "mqtts://h", "ca": tmp_path / "no.pem"}, "no.pem does not exist"),
    ):
        with pytest.raises(InputError) as info:
            BrokerAddress.parse(**kwargs)  # type: ignore[arg-type]
        assert message in str(info.value) and "\n" not in str(info.value)


def test_the_fleet_session_uses_the_core_type() -> None:
    from edge_sdk.fleet import session

    assert session.BrokerAddress is BrokerAddress

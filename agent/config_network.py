"""``agent.toml``'s network sections: ``[broker]`` (the fleet's MQTT broker), ``[serving]``
(the local inference API) and ``[store]`` (the HTTP(S) mirrors chunks may come from).

The broker URL is read by the one broker address type the operator's tools use too
(``edge_sdk.core.wire.broker_address``), so a URL the device refuses is refused there as well.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from agent.config_values import ConfigTable, keys_of
from agent.update.http_fetch import HttpSettings, ssl_context
from edge_sdk.core.wire.broker_address import SCHEMES, BrokerAddress, BrokerUrlError
from edge_sdk.errors import ConfigError


@dataclass(frozen=True)
class BrokerConfig(BrokerAddress):
    """The broker's address (host, port, TLS and its files) and how the device talks to it."""

    topic_prefix: str = "edge"
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    fetch_timeout_s: float = 10.0
    url: str = ""


# [broker]'s keys: the address's host, port and tls come from url.
BROKER_DERIVED = ("host", "port", "tls")
BROKER_KEYS = keys_of(BrokerConfig, BROKER_DERIVED)


@dataclass(frozen=True)
class ServingConfig:
    """The local inference API: loopback TCP and/or a Unix socket."""

    listen: str = "127.0.0.1:8470"  # "" turns TCP off
    unix_socket: Path | None = None
    max_body_bytes: int = 16 << 20
    threads: int = 2  # runtime calls in parallel
    # What one predict request may cost (agent.serving.codec.Limits), checked before decoding:
    max_samples: int = 256  # samples per request
    max_decoded_bytes: int = 8 << 20  # the inputs' bytes once decoded (and .npz inflated)
    max_header_bytes: int = 16 << 10  # a request's line and headers together
    # The Open Inference Protocol over gRPC (the grpc extra): loopback HOST:PORT and/or a Unix
    # socket; off unless one is given.
    grpc_listen: str = ""
    grpc_unix_socket: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8470
    grpc_host: str = ""
    grpc_port: int = 0


# [serving]'s keys: host and port come from listen, grpc_host and grpc_port from grpc_listen.
SERVING_DERIVED = ("host", "port", "grpc_host", "grpc_port")
SERVING_KEYS = keys_of(ServingConfig, SERVING_DERIVED)
STORE_KEYS = keys_of(HttpSettings)


def read_broker(t: ConfigTable, base: Path) -> BrokerConfig:
    d = BrokerConfig(host="", port=0, tls=False)
    url = t.required("url", str, '"mqtts://broker.local:8883"')
    try:
        address = BrokerAddress.from_url(url)
    except BrokerUrlError as e:
        if e.credentials:
            raise t.fail(
                "url", "must not carry credentials; the device authenticates with cert/key"
            ) from e
        raise t.fail("url", f"expected {SCHEMES}HOST[:PORT], got {url!r}; fix the URL") from e
    tls = address.tls

    ca = t.path("ca", base, "ca.pem", required=tls, must_exist=True)
    cert = t.path("cert", base, "device.pem", required=False, must_exist=True)
    key = t.path("key", base, "device.key", required=False, must_exist=True)
    if (cert is None) != (key is None):
        missing, present = ("key", "cert") if key is None else ("cert", "key")
        raise t.fail(missing, f"missing; broker.{present} is set; set both or neither")
    if not tls and (ca or cert):
        # Certificates beside mqtt:// mean someone believes the link is encrypted; it is not.
        raise t.fail(
            "ca" if ca else "cert", "set, but broker.url is mqtt:// (no TLS); use mqtts://"
        )

    prefix = t.string("topic_prefix", d.topic_prefix)
    levels = prefix.split("/")
    if not prefix or "" in levels or "+" in prefix or "#" in prefix or prefix.startswith("$"):
        raise t.fail(
            "topic_prefix",
            f"{prefix!r} must be non-empty topic levels joined by '/', with no '+', '#', leading "
            "'$', or leading, trailing or doubled '/'; fix it",
        )
    reconnect_min = t.number("reconnect_min_s", d.reconnect_min_s, positive=True)
    reconnect_max = t.number("reconnect_max_s", d.reconnect_max_s, positive=True)
    if reconnect_max < reconnect_min:
        raise t.fail(
            "reconnect_max_s",
            f"{reconnect_max} is below broker.reconnect_min_s ({reconnect_min}); raise it",
        )
    return BrokerConfig(
        host=address.host,
        port=address.port,
        tls=tls,
        ca=ca,
        cert=cert,
        key=key,
        topic_prefix=prefix,
        keepalive_s=t.integer("keepalive_s", d.keepalive_s, 5, 3600),
        reconnect_min_s=reconnect_min,
        reconnect_max_s=reconnect_max,
        fetch_timeout_s=t.number("fetch_timeout_s", d.fetch_timeout_s, positive=True),
        url=url,
    )


def read_store(t: ConfigTable, base: Path) -> HttpSettings:
    """``[store]``: how chunks are fetched from the HTTP(S) mirrors a release names."""
    d = HttpSettings()
    fallback = t.value("fallback", bool)
    ca = t.path("ca", base, "store-ca.pem", required=False, must_exist=True)
    if ca is not None:
        try:
            ssl_context(ca)  # a file that holds no certificate fails at start, not mid-update
        except ConfigError as e:
            raise t.fail("ca", f"{ca} holds no PEM certificate; give the store's CA") from e
    return HttpSettings(
        ca=ca,
        connections=t.integer("connections", d.connections, 1, 16),
        timeout_s=t.number("timeout_s", d.timeout_s, positive=True),
        tries=t.integer("tries", d.tries, 1, 10),
        backoff_s=t.number("backoff_s", d.backoff_s, positive=False),
        fallback=d.fallback if fallback is None else fallback,
    )


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _loopback(t: ConfigTable, key: str, default: str) -> tuple[str, str, int]:
    """``[serving] key`` as a loopback HOST:PORT: (as written, host, port); "" is off."""
    listen = t.string(key, default)
    host, port = "", 0
    if listen:
        host, _, port_text = listen.rpartition(":")
        host = host.strip("[]")
        # isdigit() alone lets through "²" and 5,000-digit numbers int() refuses to parse.
        digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
        if host not in _LOOPBACK or not digits or not 0 <= int(port_text) < 65536:
            raise t.fail(
                key,
                f"{listen!r} must be a loopback HOST:PORT (127.0.0.1, [::1] or localhost): the "
                'API serves applications on this device only; or "" to turn TCP off',
            )
        port = int(port_text)
    return listen, host, port


def _socket_path(t: ConfigTable, key: str, example: str, base: Path) -> Path | None:
    path = t.path(key, base, example, required=False, must_exist=False)
    if path is not None:
        try:
            mode = path.lstat().st_mode
        except OSError:
            mode = stat.S_IFSOCK  # nothing there (or unreadable): the bind says what is wrong
        if not stat.S_ISSOCK(mode):
            raise t.fail(
                key,
                f"{path} exists and is not a socket; the agent never replaces it: "
                "give a path where nothing is (or where an old socket of the agent is)",
            )
    return path


def read_serving(t: ConfigTable, base: Path) -> ServingConfig:
    d = ServingConfig()
    listen, host, port = _loopback(t, "listen", d.listen)
    unix_socket = _socket_path(t, "unix_socket", "/run/edge-agent/api.sock", base)
    grpc_listen, grpc_host, grpc_port = _loopback(t, "grpc_listen", d.grpc_listen)
    grpc_unix_socket = _socket_path(t, "grpc_unix_socket", "/run/edge-agent/grpc.sock", base)
    if grpc_listen and listen and (grpc_host, grpc_port) == (host, port) and port != 0:
        raise t.fail(
            "grpc_listen",
            f"{grpc_listen!r} is also serving.listen: give HTTP and gRPC a port each",
        )
    if grpc_unix_socket is not None and grpc_unix_socket == unix_socket:
        raise t.fail(
            "grpc_unix_socket",
            f"{grpc_unix_socket} is also serving.unix_socket: give HTTP and gRPC a socket each",
        )
    return ServingConfig(
        grpc_listen=grpc_listen,
        grpc_unix_socket=grpc_unix_socket,
        grpc_host=grpc_host,
        grpc_port=grpc_port,
        listen=listen,
        unix_socket=unix_socket,
        max_body_bytes=t.integer("max_body_bytes", d.max_body_bytes, 1),
        threads=t.integer("threads", d.threads, 1, 64),
        max_samples=t.integer("max_samples", d.max_samples, 1, 1 << 20),
        max_decoded_bytes=t.integer("max_decoded_bytes", d.max_decoded_bytes, 1, 1 << 40),
        max_header_bytes=t.integer("max_header_bytes", d.max_header_bytes, 1024, 1 << 20),
        host=host,
        port=port,
    )

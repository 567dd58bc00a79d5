"""Where the MQTT broker is: one address type for the device (``agent.toml``'s ``[broker]``) and
the operator's tools (``edge-sdk fleet ... --broker``), with one reading of broker URLs.

A broker URL is ``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]`` (TLS) and nothing more: a
path, a query or a fragment means the URL is not what its writer thinks, port 0 is no port, and
credentials in it would be sent to whoever answers (devices and operators authenticate with
client certificates). Both sides refuse the same URLs, each in its own words: this module says
*what* is wrong (:class:`BrokerUrlError`), the caller says it to its reader.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from edge_sdk.errors import InputError

DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}
SCHEMES = "mqtt:// or mqtts://"

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?\Z")


class BrokerUrlError(ValueError):
    """A broker URL refused: ``credentials`` when it carries a user or password (the rest is
    fine), else malformed; ``detail`` is urllib's word on a bad port, when it had one."""

    def __init__(self, url: str, *, credentials: bool = False, detail: str = "") -> None:
        super().__init__(detail or url)
        self.url = url
        self.credentials = credentials
        self.detail = detail


@dataclass(frozen=True)
class BrokerAddress:
    """A broker to connect to: host, port, TLS or not, and the TLS files (the CA to check the
    broker against, the client certificate and key to present)."""

    host: str
    port: int
    tls: bool
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def from_url(
        cls, url: str, *, ca: Path | None = None, cert: Path | None = None, key: Path | None = None
    ) -> BrokerAddress:
        """The address ``url`` names (the scheme's default port if it gives none), with the TLS
        files as given; :class:`BrokerUrlError` if the URL is refused. The files are the
        caller's to check: whether they must exist, and how to say so, is its business."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:  # a port that is not a number or out of range
            raise BrokerUrlError(url, detail=str(e)) from e
        host = parts.hostname or ""
        if (
            parts.scheme not in DEFAULT_PORTS
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or not (_HOSTNAME.match(host) or _is_ip(host))
            or port == 0
        ):
            raise BrokerUrlError(url)
        if parts.username is not None or parts.password is not None:
            raise BrokerUrlError(url, credentials=True)
        port = port if port is not None else DEFAULT_PORTS[parts.scheme]
        return cls(host, port, parts.scheme == "mqtts", ca, cert, key)

    @classmethod
    def parse(
        cls, url: str, *, ca: Path | None = None, cert: Path | None = None, key: Path | None = None
    ) -> BrokerAddress:
        """The operator's ``--broker``, ``--ca``, ``--client-cert`` and ``--client-key``, refused
        in one line (an InputError) naming those options."""
        try:
            address = cls.from_url(url, ca=ca, cert=cert, key=key)
        except BrokerUrlError as e:
            if e.detail:
                raise InputError(
                    f"--broker {url!r}: {e.detail}; use mqtt://HOST:PORT or mqtts://HOST:PORT"
                ) from e
            if e.credentials:
                raise InputError(
                    f"--broker {url!r} must not carry credentials; the operator authenticates "
                    "with --client-cert/--client-key"
                ) from e
            raise InputError(
                f"--broker {url!r} is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
            ) from e
        if address.tls and ca is None:
            raise InputError("--broker is mqtts:// but no --ca was given; pass the fleet CA")
        if (cert is None) != (key is None):
            raise InputError("--client-cert and --client-key go together; pass both or neither")
        for path in (ca, cert, key):
            if path is not None and not path.is_file():
                raise InputError(
                    f"{path} does not exist; pass the file `edge-sdk broker init` wrote"
                )
        return address


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

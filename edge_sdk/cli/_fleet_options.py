"""Options every ``edge-sdk fleet`` and ``broker`` command shares, and the one way to connect.

Broker and keyring settings come from options or ``EDGE_SDK_*`` variables, so a shell session
sets them once (``edge-sdk broker init`` prints the ``export`` line).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from edge_sdk.core.topics import Topics
    from edge_sdk.fleet.inventory import FleetWatch
    from edge_sdk.fleet.session import OperatorLink

RepoOpt = Annotated[
    Path,
    typer.Option("--repo", envvar="EDGE_SDK_REPO", help="The fleet's TUF repository directory."),
]
KeysOpt = Annotated[
    Path,
    typer.Option("--keys", envvar="EDGE_SDK_KEYS", help="Keyring directory (online keys sign)."),
]


class _DefaultBroker:
    """Whether this run's --broker fell back to its default; the warning is said once, just
    before connecting (a run that stops at bad input says only that)."""

    pending: str | None = None


def _note_broker_source(ctx: typer.Context, param: typer.CallbackParam, value: str) -> str:
    source = ctx.get_parameter_source(param.name or "broker")
    _DefaultBroker.pending = value if getattr(source, "name", "") == "DEFAULT" else None
    return value


def warn_if_default_broker() -> None:
    """One line when nothing named the broker: Debian's Mosquitto package already listens on
    1883, so a forgotten `export` would otherwise talk to the wrong broker without a word."""
    if _DefaultBroker.pending is None:
        return
    url, _DefaultBroker.pending = _DefaultBroker.pending, None
    sys.stderr.write(
        f"warning: no --broker or EDGE_SDK_BROKER given: talking to the default {url}, "
        "whatever broker listens there; run the export line `edge-sdk broker init` printed, "
        "or pass --broker\n"
    )
    sys.stderr.flush()


BrokerOpt = Annotated[
    str,
    typer.Option(
        "--broker",
        envvar="EDGE_SDK_BROKER",
        callback=_note_broker_source,
        help="mqtt://HOST:PORT or mqtts://HOST:PORT",
    ),
]
CaOpt = Annotated[
    Path | None, typer.Option("--ca", envvar="EDGE_SDK_BROKER_CA", help="Fleet CA (mqtts).")
]
# --client-cert/--client-key, as curl and kubectl say: in `build` and `sign`, --key is a signing
# key. The old --cert/--key still work here (hidden, with a warning: edge_sdk.cli._conventions).
CertOpt = Annotated[
    Path | None,
    typer.Option(
        "--client-cert",
        envvar="EDGE_SDK_BROKER_CERT",
        help="The operator's TLS client certificate (mqtts).",
    ),
]
KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--client-key", envvar="EDGE_SDK_BROKER_KEY", help="The operator's TLS client key (mqtts)."
    ),
]
FleetOpt = Annotated[str, typer.Option("--fleet", envvar="EDGE_SDK_FLEET", help="Fleet name.")]
PrefixOpt = Annotated[
    str, typer.Option("--topic-prefix", envvar="EDGE_SDK_TOPIC_PREFIX", help="Topic prefix.")
]
BrokerDirOpt = Annotated[
    Path,
    typer.Option(
        "--broker-dir",
        envvar="EDGE_SDK_BROKER_DIR",
        help="What `edge-sdk broker init` wrote: the fleet CA and the enrolment records.",
    ),
]


def connect(
    broker: str, ca: Path | None, cert: Path | None, key: Path | None, client_id: str
) -> OperatorLink:
    """An operator session; every input is checked here, before any connection is tried."""
    from edge_sdk.fleet.session import BrokerAddress, OperatorLink

    address = BrokerAddress.parse(broker, ca=ca, cert=cert, key=key)
    warn_if_default_broker()
    return OperatorLink(address, client_id)


def session_id(kind: str) -> str:
    """A client id of its own per command run: the broker disconnects an older session with the
    same id, so a `fleet status` must never kick a running rollout off, nor two rollouts
    each other."""
    return f"edge-sdk-{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def watch(
    broker: str, ca: Path | None, cert: Path | None, key: Path | None, topics: Topics, kind: str
) -> FleetWatch:
    """The devices' reports, on a session of its own (``edge_sdk.fleet.inventory.FleetWatch``)."""
    from edge_sdk.fleet.inventory import FleetWatch
    from edge_sdk.fleet.session import BrokerAddress

    address = BrokerAddress.parse(broker, ca=ca, cert=cert, key=key)
    warn_if_default_broker()
    return FleetWatch(address, topics, session_id(kind))

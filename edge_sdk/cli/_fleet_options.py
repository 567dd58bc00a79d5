"""Options every ``edge-sdk fleet`` and ``broker`` command shares, and the one way to connect.

Broker and keyring settings come from options or ``EDGE_SDK_*`` variables, so a shell session
sets them once (``edge-sdk broker init`` prints the ``export`` line).

The six options that say how to reach the broker (``--broker``, ``--ca``, ``--client-cert``,
``--client-key``, ``--fleet``, ``--topic-prefix``) are declared once, as the fields of
``BrokerOptions``: a command takes one parameter of that type and is registered through
``with_broker_options``, which puts the six options in that parameter's place (help order
included) and hands the command one ``BrokerOptions``. ``--repo``, ``--keys`` and the benchmark
options are ``Annotated`` aliases each command names.
"""

from __future__ import annotations

import functools
import inspect
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer

if TYPE_CHECKING:
    from edge_sdk.core.wire.topics import Topics
    from edge_sdk.fleet.inventory import FleetWatch
    from edge_sdk.fleet.session import BrokerAddress, OperatorLink

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


# The benchmark job's options: `fleet bench` and `build --measure-on` share them.
SecondsOpt = Annotated[
    float, typer.Option("--seconds", min=0.1, max=600, help="Timing per candidate on the device.")
]
MeasureSecondsOpt = Annotated[
    float,
    typer.Option("--measure-seconds", min=0.1, max=600, help="Timing per candidate on the device."),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--measure-timeout",
        min=1,
        help="Give up waiting for the device after this many seconds [default: each "
        "candidate's time, plus loading and a margin].",
        show_default=False,
    ),
]


def session_id(kind: str) -> str:
    """A client id of its own per command run: the broker disconnects an older session with the
    same id, so a `fleet status` must never kick a running rollout off, nor two rollouts
    each other."""
    return f"edge-sdk-{kind}-{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class BrokerOptions:
    """How a command reaches the fleet's broker, as one value: each field is one option, with
    its flag, environment variable, help and default."""

    broker: BrokerOpt = "mqtt://127.0.0.1:1883"
    ca: CaOpt = None
    client_cert: CertOpt = None
    client_key: KeyOpt = None
    fleet: FleetOpt = "default"
    topic_prefix: PrefixOpt = "edge"

    def topics(self) -> Topics:
        """The fleet's topics; a bad --fleet or --topic-prefix is one line."""
        from edge_sdk.core.wire.topics import Topics

        return Topics(self.topic_prefix, self.fleet)

    def address(self) -> BrokerAddress:
        """The broker's address, every part checked (the TLS files exist) before connecting."""
        from edge_sdk.fleet.session import BrokerAddress

        return BrokerAddress.parse(
            self.broker, ca=self.ca, cert=self.client_cert, key=self.client_key
        )

    def link(self, kind: str = "operator") -> OperatorLink:
        """A publishing session (not yet connected: ``with`` connects)."""
        from edge_sdk.fleet.session import OperatorLink

        address = self.address()
        warn_if_default_broker()
        return OperatorLink(address, session_id(kind))

    def watch(self, topics: Topics, kind: str) -> FleetWatch:
        """The devices' reports, on a session of its own (``edge_sdk.fleet.inventory``)."""
        from edge_sdk.fleet.inventory import FleetWatch

        address = self.address()
        warn_if_default_broker()
        return FleetWatch(address, topics, session_id(kind))


# The default a command's ``BrokerOptions`` parameter names; ``with_broker_options`` puts the
# six options, with their own defaults, in its place.
BROKER_OPTIONS = BrokerOptions()


def with_broker_options(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with its ``BrokerOptions`` parameter spelled out as the six options, in that
    parameter's place, for Typer; called with them, it gets one ``BrokerOptions`` back."""
    signature = inspect.signature(command, eval_str=True)
    (name,) = (p.name for p in signature.parameters.values() if p.annotation is BrokerOptions)
    hints = get_type_hints(BrokerOptions, include_extras=True)
    spelled = [
        inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name]
        )
        for f in fields(BrokerOptions)
    ]
    shadowed = set(signature.parameters) & {p.name for p in spelled}
    if shadowed:
        raise TypeError(f"{command.__name__}: {sorted(shadowed)} would shadow the broker options")
    params: list[inspect.Parameter] = []
    for p in signature.parameters.values():
        params.extend(spelled if p.name == name else [p])
    # Keyword-only throughout, so that options with defaults may come before a parameter
    # without one: Typer tells arguments from options by their annotation, not their kind, and
    # calls the command with keywords.
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]

    @functools.wraps(command)
    def spelled_out(**kwargs: Any) -> None:
        options = BrokerOptions(**{p.name: kwargs.pop(p.name) for p in spelled})
        command(**kwargs, **{name: options})

    del spelled_out.__wrapped__  # Typer must see the new signature, not the command's
    spelled_out.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    spelled_out.__annotations__ = {p.name: p.annotation for p in params}
    return spelled_out

"""The broker directory's text, pure: ``mosquitto.conf``, the fleet's ACL, ``broker.json`` and the
operator's ``export`` line, all from one ``BrokerSettings``. Pure so that the ACL docs/protocol.md
shows can be checked against the one ``broker init`` writes (``edge_sdk.broker.setup``).
"""

from __future__ import annotations

import shlex
from typing import Any

from edge_sdk.broker.settings import (
    AUTOSAVE_INTERVAL_S,
    CRL,
    MAX_PACKET_SIZE,
    MAX_QUEUED_MESSAGES,
    OPERATOR_CA,
    OPERATOR_CN,
    BrokerSettings,
)
from edge_sdk.core.wire.topics import Topics


def acl_text(topic_prefix: str, fleet: str) -> str:
    """The ``acl_file`` for one fleet, exactly as docs/protocol.md §2 shows it for edge/default.

    Fleet-wide reads are ``pattern`` lines: ``topic`` lines before the first ``user`` line
    apply to anonymous clients only, and certificate-authenticated devices are not anonymous.
    """
    root = Topics(topic_prefix, fleet).root
    return (
        f'# acl_file: one fleet, prefix "{topic_prefix}", fleet "{fleet}"\n'
        "# Each device: read/write its own subtree, read its own desired state.\n"
        f"pattern readwrite {root}/devices/%u/#\n"
        f"pattern read {root}/desired/devices/%u/#\n"
        "# Every device: read group desired state and the repository (signed, public to the "
        "fleet).\n"
        f"pattern read {root}/desired/groups/#\n"
        f"pattern read {root}/repo/#\n"
        "\n"
        "# The operator: everything in the fleet, and the only writer of desired/ and repo/.\n"
        f"user {OPERATOR_CN}\n"
        f"topic readwrite {root}/#\n"
    )


def mosquitto_conf(s: BrokerSettings) -> str:
    """``mosquitto.conf`` for Mosquitto 2: two mutual-TLS listeners, the fleet ACL, persistence.

    A client id is a session: a CONNECT with the id of a connected client closes that client.
    So on the devices' listener the broker replaces every client id with the certificate's CN
    (``use_username_as_clientid``): device A's certificate can only ever be session "A", and
    cannot knock device B off. The operator's commands need ids of their own instead (a
    ``fleet status`` beside a running ``fleet rollout``, whose watch and publisher are two
    sessions), so the operator dials a second listener that keeps the id it sends and admits
    only certificates of the operator CA, which no device certificate chains to.
    """
    return (
        "\n".join(
            [
                f"# Written by `edge-sdk broker init` for {s.topics.root}. Start: mosquitto -c "
                f"{s.path('mosquitto.conf')}",
                "per_listener_settings false",
                "# Started as root, Mosquitto switches to this user before it opens the keys, ACL,",
                "# data and log (`broker init` gave it those). Started by others, it stays so.",
                f"user {s.run_as}",
                "allow_anonymous false",
                f"acl_file {s.path('acl')}",
                "# Retained messages are the fleet repository: keep them across restarts.",
                "persistence true",
                f"persistence_location {s.path('data')}/",
                f"autosave_interval {AUTOSAVE_INTERVAL_S}",
                "# The agent's default Maximum Packet Size (docs/protocol.md §7).",
                f"max_packet_size {MAX_PACKET_SIZE}",
                "# Per client, QoS 1 and 2: what an offline device's session may hold.",
                f"max_queued_messages {MAX_QUEUED_MESSAGES}",
                "# Without it Nagle delays each retained read behind its SUBACK (~40 ms each).",
                "set_tcp_nodelay true",
                f"log_dest file {s.path('mosquitto.log')}",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "connection_messages true",
                "log_timestamp_format %Y-%m-%dT%H:%M:%S",
                "# Listener options must follow their listener line.",
                f"listener {s.port} {s.listen_host}",
                f"cafile {s.path('ca.pem')}",
                "# Revoked device certificates (`edge-sdk fleet revoke`); read at start.",
                f"crlfile {s.path(CRL)}",
                f"certfile {s.path('server.pem')}",
                f"keyfile {s.path('server.key')}",
                "tls_version tlsv1.2",
                "require_certificate true",
                "# The client certificate's CN is the MQTT username, %u in the ACL.",
                "use_identity_as_username true",
                "# ...and the client id: one device's certificate cannot take over (and so",
                "# disconnect) another device's session by sending that device's id.",
                "use_username_as_clientid true",
                "# The operator's listener: only the operator CA's certificates get in, and each",
                "# `edge-sdk fleet` command keeps a client id of its own (edge-sdk-<kind>-...).",
                f"listener {s.operator_port} {s.operator_host}",
                f"cafile {s.path(OPERATOR_CA)}",
                f"certfile {s.path('server.pem')}",
                f"keyfile {s.path('server.key')}",
                "tls_version tlsv1.2",
                "require_certificate true",
                "use_identity_as_username true",
            ]
        )
        + "\n"
    )


def broker_info(s: BrokerSettings) -> dict[str, Any]:
    """``broker.json``: what ``fleet enroll`` needs to write a device's agent.toml."""
    return {
        "url": s.url,
        "fleet": s.fleet,
        "topic_prefix": s.topic_prefix,
        "listen": s.listen,
        "operator_url": s.operator_url,
        "operator_listen": s.operator_listen,
        "hostnames": list(s.hostnames),
        "run_as": s.run_as,
        "ca": "ca.pem",
    }


def export_line(s: BrokerSettings) -> str:
    """The shell line that points the operator's ``edge-sdk fleet`` commands at this broker."""
    values = {
        "EDGE_SDK_BROKER": s.operator_url,
        "EDGE_SDK_BROKER_CA": str(s.path("ca.pem")),
        "EDGE_SDK_BROKER_CERT": str(s.path("operator.pem")),
        "EDGE_SDK_BROKER_KEY": str(s.path("operator.key")),
        "EDGE_SDK_BROKER_DIR": str(s.directory),
        "EDGE_SDK_REPO": str(s.repo),
        "EDGE_SDK_KEYS": str(s.keys),
    }
    if s.fleet != "default":
        values["EDGE_SDK_FLEET"] = s.fleet
    if s.topic_prefix != "edge":
        values["EDGE_SDK_TOPIC_PREFIX"] = s.topic_prefix
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in values.items())

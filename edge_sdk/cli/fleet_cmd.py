"""``edge-sdk fleet publish|assign``: put bundles on the fleet's broker and say which version
devices should run. Broker and keyring settings come from options or ``EDGE_SDK_*`` variables
so a shell session can set them once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edge_sdk.cli._common import JsonFlag, emit_json, new_app, stderr_console, stdout_console
from edge_sdk.cli._fleet_options import (
    BrokerOpt,
    CaOpt,
    CertOpt,
    FleetOpt,
    KeyOpt,
    KeysOpt,
    PrefixOpt,
    RepoOpt,
    connect,
    session_id,
    warn_if_default_broker,
)

if TYPE_CHECKING:
    from edge_sdk.fleet.session import OperatorLink
    from edge_sdk.fleet.stores import Store

fleet_app = new_app("Operate the fleet: publish bundles and assign versions over MQTT.")


def _connect(broker: str, ca: Path | None, cert: Path | None, key: Path | None) -> OperatorLink:
    return connect(broker, ca, cert, key, session_id("operator"))


@fleet_app.command("publish")
def publish_command(
    bundle: Annotated[Path, typer.Argument(help="Signed bundle file.", show_default=False)],
    repo: RepoOpt = Path("fleet-repo"),
    keys: KeysOpt = Path("keys"),
    broker: BrokerOpt = "mqtt://127.0.0.1:1883",
    ca: CaOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    fleet: FleetOpt = "default",
    topic_prefix: PrefixOpt = "edge",
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Re-send every chunk, not only those this broker has not acknowledged yet: "
            "for a broker that lost its retained messages (restarted without persistence).",
        ),
    ] = False,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            envvar="EDGE_SDK_STORE",
            help="Also upload the chunks to an artifact store: s3://BUCKET/PREFIX (credentials "
            "and region from the usual AWS_* settings) or file:///PATH (a directory an HTTP "
            "server serves). Devices then fetch them over HTTP(S) from --store-url.",
        ),
    ] = None,
    store_url: Annotated[
        list[str] | None,
        typer.Option(
            "--store-url",
            envvar="EDGE_SDK_STORE_URL",
            help="Public http(s):// base URL devices fetch the store's chunks from; repeat for "
            "more mirrors, tried in order. Default for s3://: ENDPOINT/BUCKET/PREFIX/.",
        ),
    ] = None,
    store_endpoint: Annotated[
        str | None,
        typer.Option(
            "--store-endpoint",
            envvar="EDGE_SDK_STORE_ENDPOINT",
            help="S3 endpoint URL for a non-AWS store (SeaweedFS, MinIO...); AWS_ENDPOINT_URL "
            "works too.",
        ),
    ] = None,
    broker_chunks: Annotated[
        bool,
        typer.Option(
            "--broker-chunks/--no-broker-chunks",
            help="With --store: also put the chunks on the broker, the devices' fallback "
            "source (default). --no-broker-chunks keeps the broker to control messages.",
        ),
    ] = True,
    json_output: JsonFlag = False,
) -> None:
    """Add a bundle to the fleet repository and publish its chunks and metadata (retained).

    Resumable: the chunks the broker acknowledged are recorded under REPO/published/, and a
    re-run (after Ctrl-C or a lost connection, or just again) sends only the rest, then all
    the metadata. --full sends everything again. With --store the chunks go to the store
    first, and the release's signed metadata names --store-url as its mirrors."""

    from edge_sdk.cli._publish_progress import PublishProgress
    from edge_sdk.core.bundle import read_bundle, shown_label, write_bundle
    from edge_sdk.core.topics import Topics
    from edge_sdk.fleet.publish import open_or_create, publish_bundle, signed_for_fleet
    from edge_sdk.fleet.publish_ledger import PublishLedger
    from edge_sdk.fleet.session import BrokerAddress, OperatorLink

    # Everything checkable is checked before the repository or the broker is touched.
    topics = Topics(topic_prefix, fleet)
    address = BrokerAddress.parse(broker, ca=ca, cert=cert, key=key)
    artifact_store, mirrors = _store_options(store, store_url or [], store_endpoint, broker_chunks)
    parsed, signed_now = signed_for_fleet(read_bundle(bundle), keys)
    if signed_now:
        # Written back, so publishing the same file again sends the very same release.
        write_bundle(bundle, parsed)
        stderr_console.print(
            f"signed {bundle} with the fleet's {signed_now} online key(s)", highlight=False
        )
    warn_if_default_broker()
    operator_link = OperatorLink(address, session_id("publish"))
    repository = open_or_create(repo, keys)
    # Keyed by the normalised address, so mqtt://h and mqtt://h:1883 share one ledger.
    scheme = "mqtts" if address.tls else "mqtt"
    ledger = PublishLedger.for_broker(
        repo, f"{scheme}://{address.host}:{address.port}", topics.root, fresh=full
    )
    with (
        operator_link as link,
        PublishProgress(stderr_console, plain_lines=not json_output) as progress,
    ):
        result = publish_bundle(
            parsed,
            repository,
            link,
            topics,
            progress=progress,
            ledger=ledger,
            store=artifact_store,
            mirrors=mirrors,
            broker_chunks=broker_chunks,
        )
    summary = {
        "name": result.name,
        "version": result.version,
        "version_label": parsed.manifest.label,
        "chunks": result.chunks,
        "chunk_bytes": result.chunk_bytes,
        "sent_chunks": result.sent_chunks,
        "skipped_chunks": result.skipped_chunks,
        "signed_now": signed_now,
        "sent_bytes": result.sent_bytes,
        "metadata_files": result.metadata_files,
        "repo": str(repo),
        "topic": topics.root,
        "store": store,
        "store_sent_chunks": result.store_sent_chunks,
        "store_skipped_chunks": result.store_skipped_chunks,
        "store_sent_bytes": result.store_sent_bytes,
        "mirrors": list(result.mirrors),
    }
    if json_output:
        emit_json(summary)
        return
    skipped = (
        f", {result.skipped_chunks} already on the broker (--full re-sends them)"
        if result.skipped_chunks
        else ""
    )
    stdout_console.print(
        f"published {result.name} {shown_label(parsed.manifest.label)}: {result.chunks} chunks "
        f"({result.chunk_bytes} bytes; sent {result.sent_chunks}, {result.sent_bytes} bytes"
        f"{skipped}) and {result.metadata_files} metadata files under {topics.root}/repo",
        highlight=False,
    )
    if store is not None:
        stdout_console.print(
            f"store {store}: uploaded {result.store_sent_chunks} chunks "
            f"({result.store_sent_bytes} bytes), {result.store_skipped_chunks} already there; "
            f"devices fetch from {', '.join(result.mirrors)}",
            highlight=False,
        )


def _store_options(
    store: str | None, urls: list[str], endpoint: str | None, broker_chunks: bool
) -> tuple[Store | None, list[str]]:
    from edge_sdk.errors import InputError
    from edge_sdk.fleet.stores import check_public_url, mirror_list, open_store

    if store is None:
        if urls or endpoint or not broker_chunks:
            raise InputError(
                "--store-url, --store-endpoint and --no-broker-chunks need --store; add "
                "--store s3://BUCKET/PREFIX or --store file:///PATH"
            )
        return None, []
    if endpoint is not None:
        check_public_url(endpoint, "--store-endpoint")
    opened = open_store(store, endpoint=endpoint)
    if not urls:
        default = opened.default_public_url()
        if default is None:
            raise InputError(
                f"--store {store}: give --store-url, the public http(s):// base URL devices "
                "fetch its chunks from"
            )
        urls = [default]
    return opened, mirror_list(urls)


@fleet_app.command("assign")
def assign_command(
    model: Annotated[str, typer.Argument(help="Model name.", show_default=False)],
    version: Annotated[
        str,
        typer.Argument(help="Version to run: as given to build --version.", show_default=False),
    ],
    device: Annotated[
        str | None, typer.Option("--device", help="One device id.", show_default=False)
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="A device group.", show_default=False)
    ] = None,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Allow going below versions devices committed.")
    ] = False,
    repo: RepoOpt = Path("fleet-repo"),
    keys: KeysOpt = Path("keys"),
    broker: BrokerOpt = "mqtt://127.0.0.1:1883",
    ca: CaOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    fleet: FleetOpt = "default",
    topic_prefix: PrefixOpt = "edge",
    json_output: JsonFlag = False,
) -> None:
    """Sign and publish the version a device or group should run (retained desired state)."""
    from edge_sdk.core.bundle import check_name, parse_version
    from edge_sdk.core.topics import Topics, check_identifier
    from edge_sdk.errors import InputError
    from edge_sdk.fleet.publish import assign, check_published
    from edge_sdk.signing.repository import Repository

    if (device is None) == (group is None):
        raise InputError("pass exactly one of --device ID or --group NAME")
    # Everything checkable is checked before connecting to anything.
    check_name(model)
    number, label = parse_version(version)
    if device is not None:
        check_identifier(device, "--device")
    else:
        check_identifier(str(group), "--group")
    scope = f"devices/{device}" if device is not None else f"groups/{group}"
    topics = Topics(topic_prefix, fleet)
    session = _connect(broker, ca, cert, key)
    check_published(Repository.open(repo, keys), model, number)  # before connecting, too
    with session as link:
        a = assign(
            keys, repo, link, topics, model=model, version=number, scope=scope, rollback=rollback
        )
    if json_output:
        emit_json({**a.to_json(), "version_label": label})
    else:
        verb = "rolled back" if rollback else "assigned"
        stdout_console.print(f"{verb} {model} v{label} to {scope} (serial {a.serial})")


def register(app: typer.Typer) -> None:
    # The other fleet commands live in their own modules and attach themselves to fleet_app.
    from edge_sdk.cli import (  # noqa: F401
        fleet_bench_cmd,
        fleet_enroll_cmd,
        fleet_rollout_cmd,
        fleet_status_cmd,
    )

    app.add_typer(fleet_app, name="fleet")

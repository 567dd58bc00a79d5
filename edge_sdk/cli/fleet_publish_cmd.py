"""``edge-sdk fleet publish|assign``: put bundles on the fleet's broker and say which version
devices should run. The checks and what is opened before the broker are
``edge_sdk.fleet.publish_service``'s, the sending ``edge_sdk.fleet.publish``'s; this module
parses options and prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_sdk.cli._common import JsonFlag, emit_json, stderr_console, stdout_console
from edge_sdk.cli._fleet_options import (
    BROKER_OPTIONS,
    BrokerOptions,
    KeysOpt,
    RepoOpt,
    with_broker_options,
)


@with_broker_options
def publish_command(
    bundle: Annotated[Path, typer.Argument(help="Signed bundle file.", show_default=False)],
    repo: RepoOpt = Path("fleet-repo"),
    keys: KeysOpt = Path("keys"),
    connection: BrokerOptions = BROKER_OPTIONS,
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
    from edge_sdk.core.bundle import shown_label
    from edge_sdk.fleet.publish_service import PublishTarget, open_store_options, sign_bundle_file

    # Everything checkable is checked before the repository or the broker is touched.
    topics = connection.topics()
    address = connection.address()
    artifact_store, mirrors = open_store_options(
        store, store_url or [], store_endpoint, broker_chunks
    )
    parsed, signed_now = sign_bundle_file(bundle, keys)
    if signed_now:
        stderr_console.print(
            f"signed {bundle} with the fleet's {signed_now} online key(s)", highlight=False
        )
    operator_link = connection.link("publish")
    target = PublishTarget.open(repo, keys, address, topics, fresh=full)
    with (
        operator_link as link,
        PublishProgress(stderr_console, plain_lines=not json_output) as progress,
    ):
        result = target.publish(
            parsed,
            link,
            topics,
            progress=progress,
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


@with_broker_options
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
    connection: BrokerOptions = BROKER_OPTIONS,
    json_output: JsonFlag = False,
) -> None:
    """Sign and publish the version a device or group should run (retained desired state)."""
    from edge_sdk.fleet.publish import assign, check_published
    from edge_sdk.fleet.publish_service import check_assign
    from edge_sdk.signing.repository import Repository

    # Everything checkable is checked before connecting to anything.
    target = check_assign(model, version, device, group)
    topics = connection.topics()
    session = connection.link()
    check_published(Repository.open(repo, keys), target.model, target.version)  # before, too
    with session as link:
        a = assign(
            keys,
            repo,
            link,
            topics,
            model=target.model,
            version=target.version,
            scope=target.scope,
            rollback=rollback,
        )
    if json_output:
        emit_json({**a.to_json(), "version_label": target.label})
    else:
        verb = "rolled back" if rollback else "assigned"
        stdout_console.print(
            f"{verb} {model} v{target.label} to {target.scope} (serial {a.serial})"
        )

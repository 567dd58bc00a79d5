"""``fleet publish`` and ``fleet assign`` as calls (``edge_sdk.cli.fleet_publish_cmd`` only parses
and prints): the checks that come before any connection, and what is opened before the broker
is (the repository, the ledger of acknowledged chunks, the artifact store). The sending itself
is ``edge_sdk.fleet.publish``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_sdk.core.bundle import (
    Bundle,
    check_name,
    parse_version,
    read_bundle,
    write_bundle,
)
from edge_sdk.core.wire.topics import Topics, check_identifier
from edge_sdk.errors import InputError
from edge_sdk.fleet.publish import (
    PublishResult,
    SendProgress,
    open_or_create,
    publish_bundle,
    signed_for_fleet,
)
from edge_sdk.fleet.publish_ledger import PublishLedger
from edge_sdk.fleet.session import BrokerAddress, OperatorLink
from edge_sdk.fleet.stores import Store, check_public_url, mirror_list, open_store
from edge_sdk.signing.repository import Repository


def open_store_options(
    store: str | None, urls: list[str], endpoint: str | None, broker_chunks: bool
) -> tuple[Store | None, list[str]]:
    """The artifact store ``--store`` names and the mirrors devices fetch from; the store
    options without ``--store`` are refused."""
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


def sign_bundle_file(path: Path, keys: Path) -> tuple[Bundle, int]:
    """The bundle at ``path``, signed by the fleet's online keys where it was not yet, and
    written back then, so publishing the same file again sends the very same release. Returns
    it and how many keys signed it now."""
    parsed, signed_now = signed_for_fleet(read_bundle(path), keys)
    if signed_now:
        write_bundle(path, parsed)
    return parsed, signed_now


@dataclass(frozen=True)
class PublishTarget:
    """Where a release goes: the repository, and the ledger of the chunks this broker (under
    this topic root) has acknowledged, opened before the broker is."""

    repository: Repository
    ledger: PublishLedger

    @classmethod
    def open(
        cls, repo: Path, keys: Path, address: BrokerAddress, topics: Topics, *, fresh: bool
    ) -> PublishTarget:
        # Keyed by the normalised address, so mqtt://h and mqtt://h:1883 share one ledger.
        scheme = "mqtts" if address.tls else "mqtt"
        url = f"{scheme}://{address.host}:{address.port}"
        ledger = PublishLedger.for_broker(repo, url, topics.root, fresh=fresh)
        return cls(open_or_create(repo, keys), ledger)

    def publish(
        self,
        bundle: Bundle,
        link: OperatorLink,
        topics: Topics,
        *,
        progress: Callable[[SendProgress], None] | None = None,
        store: Store | None = None,
        mirrors: Sequence[str] = (),
        broker_chunks: bool = True,
    ) -> PublishResult:
        """Add the release and send what the broker has not acknowledged yet (resumable)."""
        return publish_bundle(
            bundle,
            self.repository,
            link,
            topics,
            progress=progress,
            ledger=self.ledger,
            store=store,
            mirrors=mirrors,
            broker_chunks=broker_chunks,
        )


@dataclass(frozen=True)
class AssignTarget:
    """What ``fleet assign`` signs: ``scope`` is ``devices/<id>`` or ``groups/<name>``."""

    model: str
    version: int
    label: str
    scope: str


def check_assign(model: str, version: str, device: str | None, group: str | None) -> AssignTarget:
    """Exactly one of a device or a group, and every name valid, before anything connects."""
    if (device is None) == (group is None):
        raise InputError("pass exactly one of --device ID or --group NAME")
    check_name(model)
    number, label = parse_version(version)
    if device is not None:
        check_identifier(device, "--device")
    else:
        check_identifier(str(group), "--group")
    scope = f"devices/{device}" if device is not None else f"groups/{group}"
    return AssignTarget(model, number, label, scope)

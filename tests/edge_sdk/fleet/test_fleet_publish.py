"""Resumable ``fleet publish``: the ledger of acknowledged chunks, a re-run that sends only what
is missing, ``--full`` for a broker that lost its retained store, and an agent that installs
what a resumed publish delivered."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_sdk.core.bundle import Bundle, write_bundle
from edge_sdk.core.wire.topics import Topics
from edge_sdk.errors import BrokerUnavailableError
from edge_sdk.fleet.publish import LEDGER_BATCH, SendProgress, publish_bundle
from edge_sdk.fleet.publish_ledger import PublishLedger, ledger_path
from edge_sdk.fleet.session import BrokerAddress, OperatorLink
from testing.agents import (
    Operator,
    agent_thread,
    committed,
    make_bundle,
    padded_model,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker

Cli = Callable[..., tuple[int, str, str]]
ROOT = "edge/default"


def publish(cli: Cli, bundle: Path, repo: Path, keyring: Path, broker: Broker, *args: str) -> Any:
    code, out, err = cli(
        "fleet", "publish", bundle, "--repo", repo, "--keys", keyring, "--broker", broker.url,
        "--json", *args,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(out)


def big_bundle(keyring: Path, tmp_path: Path, version: int = 1) -> tuple[Bundle, Path]:
    """A release of about 100 chunks: more than one ledger batch."""
    bundle = make_bundle(keyring, version, artifact=padded_model(6 << 20, seed=version))
    path = tmp_path / f"digits-{version}.edgebundle"
    write_bundle(path, bundle)
    return bundle, path


def ledger(repo: Path, broker: Broker) -> PublishLedger:
    return PublishLedger.for_broker(repo, broker.url, ROOT)


def test_ledger_round_trip_and_unreadable_ledgers(tmp_path: Path) -> None:
    path = ledger_path(tmp_path, "mqtt://h:1883", ROOT)
    assert path.parent == tmp_path / "published"
    assert path != ledger_path(tmp_path, "mqtt://h:1884", ROOT)
    assert path != ledger_path(tmp_path, "mqtt://h:1883", "edge/other")
    first = PublishLedger(path, "mqtt://h:1883", ROOT)
    first.record(["a" * 64, "b" * 64])
    first.forget(["b" * 64])
    first.save()
    again = PublishLedger(path, "mqtt://h:1883", ROOT)
    assert "a" * 64 in again and "b" * 64 not in again and len(again) == 1
    assert len(PublishLedger(path, "mqtt://h:1883", ROOT, fresh=True)) == 0
    for garbage in (b"{", b"[]", b'{"format": 99, "chunks": []}', b'{"format": 1}'):
        path.write_bytes(garbage)
        assert len(PublishLedger(path, "mqtt://h:1883", ROOT)) == 0  # sends everything: safe


def test_second_publish_sends_no_chunks_and_full_sends_all(
    cli: Cli, tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    bundle = tmp_path / "digits-1.edgebundle"
    write_bundle(bundle, make_bundle(keyring, 1))
    repo = tmp_path / "repo"
    first = publish(cli, bundle, repo, keyring, broker)
    assert first["chunks"] > 0 and first["sent_chunks"] == first["chunks"]
    assert first["skipped_chunks"] == 0 and first["sent_bytes"] == first["chunk_bytes"]
    again = publish(cli, bundle, repo, keyring, broker)
    assert (again["sent_chunks"], again["sent_bytes"]) == (0, 0)
    assert again["skipped_chunks"] == first["chunks"]
    assert again["metadata_files"] == first["metadata_files"]  # metadata is always re-sent
    full = publish(cli, bundle, repo, keyring, broker, "--full")
    assert full["sent_chunks"] == first["chunks"] and full["skipped_chunks"] == 0
    # Another broker has its own ledger: everything goes there.
    with Broker(tmp_path / "other-broker") as other:
        elsewhere = publish(cli, bundle, repo, keyring, other)
    assert elsewhere["sent_chunks"] == first["chunks"]


def test_plain_output_keeps_progress_on_stderr(
    cli: Cli, tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    bundle = tmp_path / "digits-1.edgebundle"
    write_bundle(bundle, make_bundle(keyring, 1))
    common = ("--repo", tmp_path / "repo", "--keys", keyring, "--broker", broker.url)
    code, out, err = cli("fleet", "publish", bundle, *common)
    assert code == 0, err
    # The version as its user wrote it (the manifest label 1.0.1), not the integer 1.
    assert out.count("\n") == 1 and out.startswith("published digits v1.0.1:")
    assert "chunks acknowledged:" in err
    code, out, err = cli("fleet", "publish", bundle, *common)
    assert code == 0, err
    assert "sent 0, 0 bytes" in out and "already on the broker (--full re-sends them)" in out


def test_interrupted_publish_resumes_with_the_rest(
    cli: Cli, tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    bundle, path = big_bundle(keyring, tmp_path)
    operator = Operator(keyring, tmp_path / "repo", broker)
    stop_at = LEDGER_BATCH + 6

    def interrupt(p: SendProgress) -> None:
        if p.chunks_done == stop_at:
            raise KeyboardInterrupt  # Ctrl-C, after ``stop_at`` PUBACKs
        assert p.chunks_total > stop_at

    with pytest.raises(KeyboardInterrupt), operator.link() as link:
        publish_bundle(
            bundle,
            operator.repository(),
            link,
            operator.topics,
            progress=interrupt,
            ledger=ledger(operator.repo_dir, broker),
        )
    # Every acknowledged chunk was recorded, not only the full batches.
    assert len(ledger(operator.repo_dir, broker)) == stop_at
    resumed = publish(cli, path, operator.repo_dir, keyring, broker)
    assert resumed["skipped_chunks"] == stop_at
    assert resumed["sent_chunks"] == resumed["chunks"] - stop_at
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config):
        operator.assign(1)
        wait_for(committed(config, 1), what="v1 installed from a resumed publish")


def test_broker_lost_mid_publish_then_resumed(
    cli: Cli, tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    bundle, path = big_bundle(keyring, tmp_path)
    repo = tmp_path / "repo"
    operator = Operator(keyring, repo, broker)
    repository = operator.repository()

    def stop_broker(p: SendProgress) -> None:
        if p.chunks_done == LEDGER_BATCH + 1 and broker.running:
            broker.stop()  # persistence keeps what it acknowledged

    address = BrokerAddress(broker.host, broker.port, False)
    # A short acknowledgement timeout: the broker is not coming back during this publish.
    with pytest.raises(BrokerUnavailableError), OperatorLink(address, "op", timeout=2) as link:
        publish_bundle(
            bundle,
            repository,
            link,
            Topics("edge", "default"),
            progress=stop_broker,
            ledger=ledger(repo, broker),
        )
    recorded = len(ledger(repo, broker))
    assert recorded > LEDGER_BATCH
    broker.start()
    resumed = publish(cli, path, repo, keyring, broker)
    # How many PUBACKs beat the stop depends on timing; the re-run sends exactly the others.
    assert resumed["skipped_chunks"] == recorded
    assert resumed["sent_chunks"] == resumed["chunks"] - recorded
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config):
        operator.assign(1)
        wait_for(committed(config, 1), what="v1 installed after the outage")


def test_full_repairs_a_broker_that_lost_its_store(
    cli: Cli, tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    bundle = tmp_path / "digits-1.edgebundle"
    write_bundle(bundle, make_bundle(keyring, 1))
    repo = tmp_path / "repo"
    first = publish(cli, bundle, repo, keyring, broker)
    # Restarted without its persistence database: same address, no retained messages.
    broker.stop()
    shutil.rmtree(broker.data_dir)
    broker.start()
    # The ledger cannot know; a plain re-run trusts it and sends no chunks.
    assert publish(cli, bundle, repo, keyring, broker)["sent_chunks"] == 0
    repaired = publish(cli, bundle, repo, keyring, broker, "--full")
    assert repaired["sent_chunks"] == first["chunks"]
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config):
        Operator(keyring, repo, broker).assign(1)
        wait_for(committed(config, 1), what="v1 installed after --full")

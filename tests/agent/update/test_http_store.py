"""Chunks from artifact stores, end to end on real servers: a release published with
``--store`` to SeaweedFS (S3) or to a directory nginx serves (HTTP and HTTPS with a test CA),
fetched by a real agent; the store stopped mid-download (resume; broker fallback when allowed);
a store serving wrong, truncated or oversized chunks (refused, fetched from another source,
nothing installed from it); an untrusted certificate refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import Agent
from edge_sdk.core.bundle import Bundle
from edge_sdk.fleet.publish import publish_bundle
from edge_sdk.fleet.stores import DirStore, S3Store, Store
from testing.agents import (
    Operator,
    agent_thread,
    committed,
    make_bundle,
    matmul_model,
    retained_status,
    store,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker
from testing.nginx import Nginx
from testing.seaweedfs import SeaweedS3
from tests.agent.throttle import ThrottledProxy


def publish(
    operator: Operator,
    bundle: Bundle,
    artifact_store: Store,
    mirrors: list[str],
    *,
    broker_chunks: bool,
) -> dict[str, bytes]:
    with operator.link() as link:
        publish_bundle(
            bundle,
            operator.repository(),
            link,
            operator.topics,
            store=artifact_store,
            mirrors=mirrors,
            broker_chunks=broker_chunks,
        )
    return operator.repository().chunks_of(bundle)


def device(
    tmp_path: Path, broker: Any, keyring: Path, name: str = "dev", **store_settings: Any
) -> Path:
    config = write_config(tmp_path / name, broker, keyring / "root.json")
    settings = {"timeout_s": 2.0, "tries": 2, "backoff_s": 0.05, **store_settings}
    lines = ["[store]", *(f"{k} = {json.dumps(v)}" for k, v in settings.items())]
    with config.open("a") as handle:
        handle.write("\n".join(lines) + "\n")
    return config


def sources(agent: Agent) -> dict[str, tuple[int, int]]:
    transfer = agent.updaters["digits"].last_transfer
    assert transfer is not None
    return {src: (n, b) for src, n, b in transfer.sources}


def cached(agent: Agent) -> int:
    return sum(1 for p in agent.cache.directory.iterdir() if not p.name.startswith("."))


@pytest.fixture()
def seaweed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SeaweedS3]:
    with SeaweedS3(tmp_path / "seaweed") as s3:
        for key, value in s3.env().items():
            monkeypatch.setenv(key, value)
        yield s3


def test_an_update_fetched_from_an_s3_store_with_no_chunk_through_the_broker(
    tmp_path: Path, broker: Broker, keyring: Path, seaweed: SeaweedS3
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    bundle = make_bundle(keyring, 1, artifact=matmul_model(64, 1000, seed=11))
    chunks = publish(
        operator,
        bundle,
        S3Store("s3://chunks/fleet", "chunks", "fleet/", None),
        [seaweed.url + "fleet/"],
        broker_chunks=False,
    )
    config = device(tmp_path, broker, keyring, fallback=False)
    with agent_thread(config) as agent:
        operator.assign(1)
        wait_for(committed(config, 1), timeout=60, what="v1 from the S3 store")
        got = sources(agent)
        wait_for(lambda: retained_status(broker) is not None, what="a status")
        status = retained_status(broker)
    total = sum(len(c) for c in chunks.values())
    assert got == {seaweed.url + "fleet/": (len(chunks), total)}
    assert status is not None
    reported = status["models"]["digits"]["last_transfer"]["sources"]
    assert reported == {seaweed.url + "fleet/": {"chunks": len(chunks), "bytes": total}}


def test_https_store_with_the_test_ca_and_an_untrusted_certificate_refused(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """A device that trusts the store's CA fetches everything over HTTPS; one that does not
    (system CA store) refuses the certificate: with the fallback it takes the broker's
    chunks, without it nothing is installed and the reason names the certificate."""
    operator = Operator(keyring, tmp_path / "repo", broker)
    bundle = make_bundle(keyring, 1, artifact=matmul_model(64, 1000, seed=12))
    with Nginx(tmp_path / "www", tmp_path / "nginx", tls=True) as origin:
        assert origin.ca_path is not None
        chunks = publish(
            operator,
            bundle,
            DirStore("file://www", tmp_path / "www"),
            [origin.url],
            broker_chunks=True,
        )
        trusting = device(tmp_path, broker, keyring, "trusting", ca=str(origin.ca_path))
        with agent_thread(trusting) as agent:
            operator.assign(1)
            wait_for(committed(trusting, 1), timeout=60, what="v1 over HTTPS")
            assert set(sources(agent)) == {origin.url}
        falls_back = device(tmp_path, broker, keyring, "falls-back")
        with agent_thread(falls_back) as agent:
            wait_for(committed(falls_back, 1), timeout=60, what="v1 from the broker")
            assert sources(agent) == {"broker": (len(chunks), sum(map(len, chunks.values())))}
        strict = device(tmp_path, broker, keyring, "strict", fallback=False)
        with agent_thread(strict) as agent:
            wait_for(
                lambda: "TLS certificate refused" in store(strict).load_journal().reason,
                timeout=30,
                what="the refusal",
            )
            assert store(strict).current() is None
            assert cached(agent) == 0


def test_a_store_serving_wrong_truncated_or_oversized_chunks_installs_nothing_from_it(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    bundle = make_bundle(keyring, 1, artifact=matmul_model(64, 2000, seed=13))
    good, bad = tmp_path / "good", tmp_path / "bad"
    chunks = publish(
        operator, bundle, DirStore("file://good", good), ["http://x/"], broker_chunks=True
    )
    DirStore("file://bad", bad).upload(chunks)
    big = sorted((sha for sha, data in chunks.items() if len(data) > 1000))[:3]
    assert len(big) == 3
    wrong, truncated, oversized = (bad / sha for sha in big)
    data = bytearray(wrong.read_bytes())
    data[10] ^= 1
    wrong.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:-1])
    oversized.write_bytes(oversized.read_bytes() + b"!")
    with (
        Nginx(bad, tmp_path / "nginx-bad") as hostile,
        Nginx(good, tmp_path / "nginx-good") as honest,
    ):
        repo = operator.repository()
        repo.set_mirrors("digits", 1, [hostile.url, honest.url])
        with operator.link() as link:
            from edge_sdk.fleet.publish import send
            from edge_sdk.signing.repository import PublishSet

            send(link, operator.topics, PublishSet(repo.metadata_files()))
        # Another mirror: the three come from the honest one.
        first = device(tmp_path, broker, keyring, "two-mirrors", fallback=False)
        with agent_thread(first) as agent:
            operator.assign(1)
            wait_for(committed(first, 1), timeout=60, what="v1 from two mirrors")
            got = sources(agent)
        assert got[honest.url][0] == 3 and got[hostile.url][0] == len(chunks) - 3
        # The broker as the other source.
        repo.set_mirrors("digits", 1, [hostile.url])
        with operator.link() as link:
            send(link, operator.topics, PublishSet(repo.metadata_files()))
        second = device(tmp_path, broker, keyring, "fallback")
        with agent_thread(second) as agent:
            wait_for(committed(second, 1), timeout=60, what="v1 with the broker's chunks")
            got = sources(agent)
        assert got["broker"][0] == 3 and got[hostile.url][0] == len(chunks) - 3
        # No other source: nothing is installed, and the verified chunks are kept.
        third = device(tmp_path, broker, keyring, "hostile-only", fallback=False)
        with agent_thread(third) as agent:
            wait_for(
                lambda: "came from no mirror" in store(third).load_journal().reason,
                timeout=30,
                what="the refusal",
            )
            assert store(third).current() is None
            held = {p.name for p in agent.cache.directory.iterdir()}
            assert held == set(chunks) - set(big)


def test_the_store_stopped_mid_download_resumes_and_falls_back_to_the_broker(
    tmp_path: Path,
    broker: Broker,
    keyring: Path,
    seaweed: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The daemon's pause between retries doubles up to a minute; the test needs no minute.
    monkeypatch.setattr("agent.daemon._RETRY_MAX_S", 2.0)
    operator = Operator(keyring, tmp_path / "repo", broker)
    bundle = make_bundle(keyring, 1, artifact=matmul_model(64, 2000, seed=14))
    port = int(seaweed.endpoint.rsplit(":", 1)[1])
    with ThrottledProxy(port, rate=150_000) as proxy:
        mirror = f"http://127.0.0.1:{proxy.port}/chunks/v1/"
        chunks = publish(
            operator,
            bundle,
            S3Store("s3://chunks/v1", "chunks", "v1/", None),
            [mirror],
            broker_chunks=True,
        )
        assert len(chunks) >= 8
        # Without the fallback: the download pauses when the store goes, keeps what arrived,
        # and finishes with only the rest once it is back.
        strict = device(tmp_path, broker, keyring, "strict", fallback=False, connections=2)
        with agent_thread(strict) as agent:
            operator.assign(1)
            wait_for(lambda: cached(agent) >= 2, timeout=60, what="a few chunks")
            seaweed.stop()
            proxy.cut()
            wait_for(
                lambda: "came from no mirror" in store(strict).load_journal().reason,
                timeout=30,
                what="the pause",
            )
            held = cached(agent)
            assert 2 <= held < len(chunks)
            seaweed.start()
            wait_for(committed(strict, 1), timeout=60, what="v1 after the store came back")
            transfer = agent.updaters["digits"].last_transfer
        assert transfer is not None and transfer.cached >= held
        assert set(dict((s, n) for s, n, _ in transfer.sources)) == {mirror}
        # With the fallback: what the store no longer serves comes from the broker.
        loose = device(tmp_path, broker, keyring, "loose", connections=2)
        with agent_thread(loose) as agent:
            wait_for(lambda: cached(agent) >= 2, timeout=60, what="a few chunks")
            seaweed.stop()
            proxy.cut()
            wait_for(committed(loose, 1), timeout=60, what="v1 from the broker")
            got = sources(agent)
    assert got[mirror][0] >= 2 and got["broker"][0] >= 1
    assert got[mirror][0] + got["broker"][0] == len(chunks)

"""Moving a release onto the device, end to end on a real broker: slow links finish, progress
is kept, a bad or undeliverable chunk ends in a reported failure after bounded retries, and
the operator's retry resumes from the verified chunks the device holds."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from agent.daemon import Agent
from agent.update.store import ModelStore
from edge_sdk.core.bundle import Bundle
from testing.agents import (
    Operator,
    agent_thread,
    committed,
    make_bundle,
    matmul_model,
    retained_message,
    retained_status,
    store,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker
from tests.agent.throttle import ThrottledProxy


def small_bundle(keyring: Path, version: int, seed: int = 0) -> Bundle:
    """About 260 kB of artifact: a handful of chunks."""
    return make_bundle(keyring, version, artifact=matmul_model(64, 1000, seed=seed))


def cached(agent: Agent) -> set[str]:
    return {p.name for p in agent.cache.directory.iterdir() if not p.name.startswith(".")}


def failed_with(path: Path, phrase: str) -> bool:
    journal = store(path).load_journal()
    return journal.state.value == "failed" and phrase in journal.reason


def some_chunk(operator: Operator, bundle: Bundle) -> tuple[str, bytes]:
    chunks = operator.repository().chunks_of(bundle)
    return max(chunks.items(), key=lambda item: len(item[1]))


def test_a_32_kBps_link_completes_at_the_speed_of_the_link(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """Each read times out on silence, not on a batch: with a 3 s fetch timeout, a batch of
    chunks that takes ~10 s to arrive at 32 kB/s still completes (it never did before)."""
    operator = Operator(keyring, tmp_path / "repo", broker)
    bundle = small_bundle(keyring, 1)
    operator.publish(bundle)
    with ThrottledProxy(broker.port, rate=32_000) as proxy:
        config = write_config(
            tmp_path / "dev", SimpleNamespace(url=proxy.url, tls=False), keyring / "root.json"
        )
        text = config.read_text().replace("fetch_timeout_s = 5.0", "fetch_timeout_s = 3.0")
        config.write_text(text)
        with agent_thread(config) as agent:
            started = time.monotonic()
            operator.assign(1)
            wait_for(committed(config, 1), timeout=60, what="v1 over a 32 kB/s link")
            took = time.monotonic() - started
            transfer = agent.updaters["digits"].last_transfer
            pauses = agent.pauses
    assert transfer is not None and transfer.fetched == transfer.chunks
    # At the speed of the link: no timeouts and retries on the way.
    assert pauses == 0
    assert took >= transfer.fetched_bytes / 32_000 * 0.8, (took, transfer)
    assert proxy.bytes_down >= transfer.fetched_bytes


def test_chunks_that_arrived_are_kept_when_the_link_breaks(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """The link breaks in the middle of the first batch: the chunks already received are
    stored, and the resumed download takes them from the cache."""
    operator = Operator(keyring, tmp_path / "repo", broker)
    bundle = small_bundle(keyring, 1, seed=5)
    operator.publish(bundle)
    with ThrottledProxy(broker.port, rate=32_000) as proxy:
        config = write_config(
            tmp_path / "dev", SimpleNamespace(url=proxy.url, tls=False), keyring / "root.json"
        )
        with agent_thread(config) as agent:
            operator.assign(1)
            wait_for(lambda: len(cached(agent)) >= 1, timeout=60, what="a first chunk")
            proxy.cut()
            held = len(cached(agent))
            wait_for(committed(config, 1), timeout=60, what="v1 after the link broke")
            transfer = agent.updaters["digits"].last_transfer
            connections = agent.link.connections
    assert connections >= 2
    assert transfer is not None and transfer.cached >= held >= 1, transfer


def test_a_bad_chunk_is_refetched_then_refused_and_the_retry_resumes(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    bundle = small_bundle(keyring, 1, seed=7)
    operator.publish(bundle)
    sha, data = some_chunk(operator, bundle)
    all_chunks = set(operator.repository().chunks_of(bundle))
    operator.raw(operator.topics.chunk(sha), data[:100] + bytes([data[100] ^ 1]) + data[101:])
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config) as agent:
        operator.assign(1)
        wait_for(lambda: failed_with(config, "does not match its signed sha256"))
        # Reported, with the reason, and every verified chunk kept for a retry.
        wait_for(
            lambda: (
                "does not match its signed sha256"
                in (retained_status(broker) or {})
                .get("models", {})
                .get("digits", {})
                .get("reason", "")
            )
        )
        assert "3 tries" in store(config).load_journal().reason
        assert cached(agent) == all_chunks - {sha}
        # The operator puts the right chunk back and assigns again: only that one is fetched.
        operator.raw(operator.topics.chunk(sha), data)
        operator.assign(1)
        wait_for(committed(config, 1), what="v1 after the retry")
        transfer = agent.updaters["digits"].last_transfer
    assert transfer is not None
    assert (transfer.fetched, transfer.cached) == (1, len(all_chunks) - 1), transfer
    assert cached(agent) == set()  # installed: the cache is emptied


def test_the_same_assignment_published_again_retries_a_failed_update_from_what_is_held(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """The operator's other retry: not a new assignment, the very same signed message sent
    again. Its serial is the one already accepted, so it is no new order; but it arrives live
    (no retain flag), which the retained copy at a restart never does: the failed update runs
    once more, fetching only the chunk that was bad."""
    operator = Operator(keyring, tmp_path / "repo", broker)
    bundle = small_bundle(keyring, 1, seed=11)
    operator.publish(bundle)
    sha, data = some_chunk(operator, bundle)
    all_chunks = set(operator.repository().chunks_of(bundle))
    operator.raw(operator.topics.chunk(sha), data[:50] + bytes([data[50] ^ 1]) + data[51:])
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config) as agent:
        assignment = operator.assign(1)
        wait_for(lambda: failed_with(config, "does not match its signed sha256"))
        desired = operator.topics.desired_device("dev-1", "digits")
        signed = retained_message(broker, desired)
        assert signed is not None
        serial = store(config).load_journal().serial
        assert serial == assignment.serial
        operator.raw(operator.topics.chunk(sha), data)
        operator.raw(desired, signed)  # the same bytes, published again
        wait_for(committed(config, 1), what="v1 after the same assignment was sent again")
        transfer = agent.updaters["digits"].last_transfer
        assert store(config).load_journal().serial == serial
    assert transfer is not None
    assert (transfer.fetched, transfer.cached) == (1, len(all_chunks) - 1), transfer


def test_the_retained_copy_of_a_failed_assignment_does_not_retry_it_at_a_restart(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """A failure is final until the operator acts: restarting the agent, which receives the
    retained assignment again, does not start the failed update over."""
    operator = Operator(keyring, tmp_path / "repo", broker)
    bundle = small_bundle(keyring, 1, seed=12)
    operator.publish(bundle)
    sha, data = some_chunk(operator, bundle)
    operator.raw(operator.topics.chunk(sha), data[:50] + bytes([data[50] ^ 1]) + data[51:])
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config):
        operator.assign(1)
        wait_for(lambda: failed_with(config, "does not match its signed sha256"))
    operator.raw(operator.topics.chunk(sha), data)  # fixed, but nobody asked for a retry
    with agent_thread(config) as agent:
        wait_for(lambda: agent.link.connected.is_set(), what="the agent connected")
        time.sleep(2.0)  # the retained assignment arrives and is looked at
        assert store(config).load_journal().state.value == "failed"
        assert agent.updaters["digits"].slot.version is None


def test_a_chunk_the_broker_never_delivers_fails_after_bounded_retries(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """A chunk's retained message over the agent's Maximum Packet Size is dropped by the
    broker: the read gets no message. That ends in a reported failure, not endless
    `downloading`; while it is retried, the status says why."""
    operator = Operator(keyring, tmp_path / "repo", broker)
    bundle = small_bundle(keyring, 1, seed=9)
    operator.publish(bundle)
    sha, _ = some_chunk(operator, bundle)
    operator.raw(operator.topics.chunk(sha), b"x" * (3 << 20))  # over max packet (1 MiB + 4 KiB)
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config) as agent:
        operator.assign(1)
        wait_for(
            lambda: store(config).load_journal().reason.startswith("waiting: chunk"),
            what="the pause reason in the journal",
        )
        wait_for(lambda: failed_with(config, "was not delivered"), timeout=40)
        reason = store(config).load_journal().reason
        assert "maximum packet size" in reason and "gave up after" in reason, reason
        digits = agent.updaters["digits"]
        wait_for(lambda: digits.outcome is not None and digits.outcome.result == "failed")
        assert agent.updaters["digits"].slot.version is None


def test_oversized_timestamp_metadata_is_final_and_reported(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """timestamp.json over its 64 KiB cap (but under the packet size, so it is delivered) is
    tampering: the update fails at once with the reason, it is not retried forever."""
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(small_bundle(keyring, 1, seed=3))
    operator.raw(operator.topics.metadata_file("timestamp.json"), b" " * 100_000)
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config) as agent:
        operator.assign(1)
        wait_for(lambda: failed_with(config, "longer than its signed length"), timeout=20)
        assert agent.pauses == 0
    assert ModelStore(tmp_path / "dev" / "state", "digits").installed() == []

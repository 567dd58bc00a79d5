"""The agent end to end against a real Mosquitto: publish, download, verify, self-test, swap;
and every way an update is refused, with the running model untouched and the reason reported."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import Agent
from edge_sdk.core.bundle import Bundle
from edge_sdk.core.wire.assignment import Assignment, sign_assignment
from edge_sdk.signing.keys import init_keys, load_signer, rotate_online_key
from testing.agents import (
    Operator,
    agent_thread,
    committed,
    make_bundle,
    padded_model,
    retained_status,
    store,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker

# docs/protocol.md's ACL: each device its own subtree, read-only repository and desired state,
# and only the operator identity writes the rest.
FLEET_ACL = """
pattern readwrite edge/default/devices/%u/#
pattern read edge/default/desired/devices/%u/#
pattern read edge/default/desired/groups/#
pattern read edge/default/repo/#
user operator
topic readwrite edge/#
"""


@pytest.fixture(params=["plain", "mutual-tls-with-acl"])
def any_broker(request: pytest.FixtureRequest, broker_factory: Callable[..., Broker]) -> Broker:
    if request.param == "plain":
        return broker_factory()
    return broker_factory(tls=True, acl=FLEET_ACL)


def reported(broker: Broker, check: Callable[[dict[str, Any]], bool]) -> Callable[[], bool]:
    def probe() -> bool:
        status = retained_status(broker)
        return status is not None and check(status["models"]["digits"])

    return probe


@contextmanager
def running_v1(
    tmp_path: Path, broker: Broker, keyring: Path, failpoints: str = "", **config: Any
) -> Iterator[tuple[Operator, Path, Agent]]:
    """An agent that committed v1 of digits (with ``failpoints``, agent.failpoints)."""
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    path = write_config(tmp_path / "dev", broker, keyring / "root.json", **config)
    with agent_thread(path, failpoints) as agent:
        operator.assign(1)
        wait_for(committed(path, 1), what="v1 committed")
        yield operator, path, agent


def refused(
    agent: Agent, path: Path, broker: Broker, phrase: str, *, chunks_kept: bool = False
) -> None:
    """The update ended without touching v1, and the status on the broker says why. With
    ``chunks_kept``, the verified chunks stay in the cache for a retry."""
    digits = agent.updaters["digits"]
    wait_for(lambda: digits.outcome is not None and digits.outcome.result != "committed")
    assert digits.outcome is not None
    assert phrase in digits.outcome.reason, digits.outcome.reason
    # The report goes out once the failed update is cleaned up.
    wait_for(reported(broker, lambda m: phrase in (m["last_result"] or {}).get("reason", "")))
    s = store(path)
    assert s.current() == 1 and digits.slot.version == 1
    assert s.installed() == [1]
    assert list(s.staging.iterdir()) == []
    assert bool(list(agent.cache.directory.iterdir())) == chunks_kept


def new_chunk(operator: Operator, bundle: Bundle) -> tuple[str, bytes]:
    """The biggest chunk of ``bundle`` that v1 does not share (a shared one is never fetched:
    the device holds a verified copy)."""
    old = operator.repository().chunks_of(make_bundle(operator.keyring, 1))
    fresh = {s: d for s, d in operator.repository().chunks_of(bundle).items() if s not in old}
    return max(fresh.items(), key=lambda item: len(item[1]))


def test_a_good_update_end_to_end(tmp_path: Path, any_broker: Broker, keyring: Path) -> None:
    operator = Operator(keyring, tmp_path / "repo", any_broker)
    operator.publish(make_bundle(keyring, 1))
    config = write_config(tmp_path / "dev", any_broker, keyring / "root.json")
    events: list[dict[str, Any]] = []
    watcher = any_broker.client("operator" if any_broker.tls else None)
    watcher.on_message = lambda _c, _u, msg: events.append(json.loads(msg.payload))
    watcher.subscribe(operator.topics.events("dev-1"), qos=1)
    with agent_thread(config) as agent:
        operator.assign(1)
        wait_for(committed(config, 1), what="v1 committed")
        operator.publish(make_bundle(keyring, 2))
        operator.assign(2)
        wait_for(committed(config, 2), what="v2 committed")
        wait_for(reported(any_broker, lambda m: m["version"] == 2 and m["state"] == "committed"))
        assert agent.updaters["digits"].slot.version == 2
    status = retained_status(any_broker)
    assert status is not None
    digits = status["models"]["digits"]
    assert digits["last_result"]["result"] == "committed"
    # Update events as they happen, step by step, for both versions.
    wait_for(lambda: [e["event"] for e in events if e["version"] == 2][-1:] == ["probation_passed"])
    watcher.disconnect()
    assert [e["event"] for e in events if e["version"] == 2] == [
        "assigned",
        "downloaded",
        "verified",
        "selftest_passed",
        "switched",
        "probation_passed",
    ]
    assert status["profile"] == "x86-64" and status["memory_rss_bytes"] > 0
    assert store(config).installed() == [1, 2]


def test_a_new_version_fetches_only_the_chunks_that_changed(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    big = padded_model(2 << 20, seed=1)
    shifted = padded_model(2 << 20, seed=1, doc="v2: retrained head")
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1, artifact=big))
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config) as agent:
        operator.assign(1)
        wait_for(committed(config, 1))
        # Same weights behind a longer header: most of the file is unchanged, but shifted.
        operator.publish(make_bundle(keyring, 2, artifact=shifted))
        operator.assign(2)
        wait_for(committed(config, 2))
        transfer = agent.updaters["digits"].last_transfer
    assert transfer is not None
    assert transfer.reused >= 0.8 * transfer.chunks, transfer
    assert transfer.fetched_bytes < 0.2 * len(big), transfer


def test_a_changed_byte_in_one_chunk_is_refused(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        bundle = make_bundle(keyring, 2, artifact=padded_model(300_000, seed=2))
        operator.publish(bundle)
        sha, data = new_chunk(operator, bundle)
        operator.raw(operator.topics.chunk(sha), data[:100] + bytes([data[100] ^ 1]) + data[101:])
        operator.assign(2)
        refused(agent, path, broker, "does not match its signed sha256", chunks_kept=True)
        assert not agent.cache.has(sha)


def test_a_truncated_chunk_is_refused(tmp_path: Path, broker: Broker, keyring: Path) -> None:
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        bundle = make_bundle(keyring, 2, artifact=padded_model(300_000, seed=3))
        operator.publish(bundle)
        sha, data = new_chunk(operator, bundle)
        operator.raw(operator.topics.chunk(sha), data[: len(data) // 2])
        operator.assign(2)
        refused(agent, path, broker, "does not match its signed sha256", chunks_kept=True)
        assert not agent.cache.has(sha)


def test_a_bundle_signed_by_an_unknown_key_is_refused(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    stranger = tmp_path / "stranger"
    init_keys(stranger, online_keys=1, threshold=1)
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        operator.publish(make_bundle(stranger, 2))
        operator.assign(2)
        refused(agent, path, broker, "does not trust")


def test_an_unsigned_bundle_is_refused(tmp_path: Path, broker: Broker, keyring: Path) -> None:
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        operator.publish(make_bundle(keyring, 2, signed=False))
        operator.assign(2)
        refused(agent, path, broker, "not signed")


def test_fleet_metadata_signed_by_another_keyring_is_refused(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    stranger = tmp_path / "stranger"
    init_keys(stranger, online_keys=1, threshold=1)
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        # A look-alike repository from another keyring overwrites the fleet's metadata.
        fake = Operator(stranger, tmp_path / "fake-repo", broker)
        fake.publish(make_bundle(stranger, 2))
        operator.assign(2)
        refused(agent, path, broker, "fleet metadata")


def test_expired_metadata_is_refused_and_the_model_keeps_serving(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        operator.publish(make_bundle(keyring, 2), expires=datetime.now(UTC) - timedelta(hours=1))
        operator.assign(2)
        refused(agent, path, broker, "expired")
        assert agent.updaters["digits"].slot.loaded is not None


def test_a_bundle_for_another_profile_is_refused(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        operator.publish(make_bundle(keyring, 2, profile="x86-64-vnni"))
        operator.assign(2)
        refused(agent, path, broker, "built for profile 'x86-64-vnni'")


def test_an_oversized_artifact_is_refused_before_download(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    with running_v1(tmp_path, broker, keyring, limits={"max_artifact_bytes": 5_000_000}) as (
        operator,
        path,
        agent,
    ):
        before = agent.updaters["digits"].last_transfer  # v1's
        operator.publish(make_bundle(keyring, 2, artifact=padded_model(1 << 20)))
        operator.assign(2)
        refused(agent, path, broker, "over this device's cap")
        assert agent.updaters["digits"].last_transfer is before  # nothing was fetched


def test_golden_vectors_that_fail_on_the_device_are_refused(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        operator.publish(make_bundle(keyring, 2, break_golden=True))
        operator.assign(2)
        refused(agent, path, broker, "self-test of digits v2 failed: golden vectors failed")


def test_disk_full_during_download_aborts_cleanly(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    # v1 (4.6 MB) fits; v2's new chunks do not.
    with running_v1(tmp_path, broker, keyring, "disk_full_after_bytes=4800000") as (
        operator,
        path,
        agent,
    ):
        operator.publish(make_bundle(keyring, 2, artifact=padded_model(1 << 20, seed=4)))
        operator.assign(2)
        refused(agent, path, broker, "disk full")


def test_not_enough_free_space_is_refused_before_download(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        # Reserve more than any disk has: the check must refuse before fetching a byte.
        object.__setattr__(agent.config.limits, "min_free_bytes", 1 << 60)
        before = agent.updaters["digits"].last_transfer  # v1's
        operator.publish(make_bundle(keyring, 2, artifact=padded_model(1 << 20)))
        operator.assign(2)
        refused(agent, path, broker, "not enough disk")
        assert agent.updaters["digits"].last_transfer is before


def test_an_older_version_is_refused_but_a_signed_rollback_goes_back(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        operator.publish(make_bundle(keyring, 2))
        operator.assign(2)
        wait_for(committed(path, 2))
        operator.assign(1)  # not a rollback: below the anti-rollback floor
        digits = agent.updaters["digits"]
        wait_for(lambda: digits.outcome is not None and digits.outcome.result == "refused")
        assert digits.outcome is not None and "anti-rollback" in digits.outcome.reason
        assert store(path).current() == 2
        operator.assign(1, rollback=True)
        wait_for(lambda: store(path).current() == 1 and digits.journal.state == "rolled_back")
        assert digits.slot.version == 1
        assert "rollback to v1 requested by the fleet" in digits.journal.reason


def test_a_replayed_assignment_is_ignored(tmp_path: Path, broker: Broker, keyring: Path) -> None:
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        old = Assignment("digits", 1, "devices/dev-1", 5)
        payload = sign_assignment(
            old, [load_signer(keyring / "online-1.key")], expires=datetime.now(UTC) + timedelta(1)
        )
        operator.publish(make_bundle(keyring, 2))
        operator.assign(2)
        wait_for(committed(path, 2))
        operator.raw(operator.topics.desired_device("dev-1", "digits"), payload)
        wait_for(lambda: "replayed assignment" in agent.assignment_error)
        assert store(path).current() == 2


@pytest.mark.parametrize(
    ("payload", "phrase"),
    [
        (b"not json at all", "not TUF targets metadata"),
        (b'{"signed": {"_type": "targets"', "not TUF targets metadata"),
        (b"", None),  # an empty retained message clears desired state: nothing to do
    ],
)
def test_malformed_assignments_are_reported_and_ignored(
    tmp_path: Path, broker: Broker, keyring: Path, payload: bytes, phrase: str | None
) -> None:
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        operator.raw(operator.topics.desired_device("dev-1", "digits"), payload)
        if phrase is not None:
            wait_for(lambda: phrase in agent.assignment_error)
            wait_for(lambda: phrase in (retained_status(broker) or {}).get("assignment_error", ""))
        assert store(path).current() == 1 and agent.updaters["digits"].slot.version == 1


def test_an_oversized_message_is_dropped_by_the_broker_not_buffered(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """The agent announces MQTT 5's Maximum Packet Size: the broker must not deliver more."""
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        topic = operator.topics.desired_device("dev-1", "digits")
        operator.raw(topic, b"x" * (3 << 20))  # over max_chunk/metadata bytes (1 MiB)
        time.sleep(1.0)
        assert agent.assignment_error == ""  # never reached the agent
        operator.raw(topic, b"small garbage")  # this one does, and is refused as malformed
        wait_for(lambda: "not TUF targets metadata" in agent.assignment_error)
        assert store(path).current() == 1


def test_an_assignment_for_another_device_is_refused(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        other = Assignment("digits", 2, "devices/dev-2", 10**15)
        payload = sign_assignment(
            other, [load_signer(keyring / "online-1.key")], expires=datetime.now(UTC) + timedelta(1)
        )
        operator.raw(operator.topics.desired_device("dev-1", "digits"), payload)
        wait_for(lambda: "devices/dev-2" in agent.assignment_error)
        assert store(path).current() == 1


def test_a_group_assignment_reaches_its_devices(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config), operator.link() as link:
        from edge_sdk.fleet.publish import assign

        assign(
            keyring,
            operator.repo_dir,
            link,
            operator.topics,
            model="digits",
            version=1,
            scope="groups/default",
        )
        wait_for(committed(config, 1))


def test_key_rotation_reaches_the_device_through_a_new_root(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    with running_v1(tmp_path, broker, keyring) as (operator, path, agent):
        rotate_online_key(keyring, revoke=keyring / "online-1.key")
        new_key = max(keyring.glob("online-*.key"), key=lambda p: int(p.stem.split("-")[1]))
        with operator.link() as link:
            from edge_sdk.fleet.publish import send

            send(link, operator.topics, operator.repository().refresh())
        bundle = make_bundle(keyring, 2)
        from edge_sdk.core.trust import sign_files

        resigned = bundle.with_signatures(
            sign_files(
                bundle.signed_files(),
                [load_signer(new_key)],
                expires=datetime.now(UTC) + timedelta(days=1),
                custom=bundle.manifest.identity(),
            )
        )
        operator.publish(resigned)
        operator.assign(2)
        wait_for(committed(path, 2), what="v2 committed after rotation")
        root = json.loads((agent.tuf_dir / "root.json").read_bytes())
        assert root["signed"]["version"] == 2


def test_the_model_keeps_serving_while_the_broker_is_away(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config):
        operator.assign(1)
        wait_for(committed(config, 1))
    broker.stop()
    with agent_thread(config) as agent:
        # Serving starts from disk, before (and without) any broker.
        wait_for(lambda: agent.updaters["digits"].slot.version == 1)
        assert not agent.link.connected.is_set()
        broker.start()
        wait_for(agent.link.connected.is_set, what="reconnected")


def test_a_version_whose_files_no_longer_verify_fails_its_check_without_raising(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    with running_v1(tmp_path, broker, keyring) as (_, path, agent):
        model = store(path).version_dir(1) / "model.onnx"
        data = bytearray(model.read_bytes())
        data[1000] ^= 0xFF
        model.write_bytes(bytes(data))
        loaded, problem = agent.updaters["digits"]._checked(1)
    assert loaded is None and "does not match" in problem

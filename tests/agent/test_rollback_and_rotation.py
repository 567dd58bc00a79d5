"""Rollback targets and key rotation, end to end with a real broker, real bundles and, for the
power cut, a real SIGKILL: a version directory half deleted is never a rollback target, one
that no longer verifies is refused while the device keeps serving, and a key rotation does not
take down what a device installed and verified (until a re-signed release replaces it)."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.reports import model_status
from agent.update.machine import State
from edge_sdk.core.bundle import Bundle, read_unpacked
from edge_sdk.core.trust import sign_files, verify_bundle
from edge_sdk.fleet.publish import send
from edge_sdk.signing.keys import load_signer, load_trust_root, rotate_online_key
from testing.agents import (
    Operator,
    agent_thread,
    committed,
    make_bundle,
    retained_status,
    start_process,
    store,
    wait_for,
    write_config,
)
from testing.mosquitto import Broker


def resigned(bundle: Bundle, key: Path) -> Bundle:
    return bundle.with_signatures(
        sign_files(
            bundle.signed_files(),
            [load_signer(key)],
            expires=datetime.now(UTC) + timedelta(days=1),
            custom=bundle.manifest.identity(),
        )
    )


def test_a_kill_inside_pruning_leaves_no_half_version_and_a_rollback_fetches_it_again(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    for version in (1, 2, 3):
        operator.publish(make_bundle(keyring, version))
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config):
        operator.assign(1)
        wait_for(committed(config, 1))
        operator.assign(2)
        wait_for(committed(config, 2))
    # v3's commit prunes v1 (keep_versions = 2): the agent dies with v1 renamed aside.
    operator.assign(3)
    process = start_process(config, tmp_path / "agent.log", failpoints="crash_at=pruning")
    try:
        assert process.wait(60) == -signal.SIGKILL, (tmp_path / "agent.log").read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
    s = store(config)
    assert s.installed() == [2, 3]  # v1 is gone as a version the moment its removal starts
    assert [p.name for p in s.versions.iterdir() if p.name.startswith(".removing-1-")]

    with agent_thread(config) as agent:  # restarted without the failpoint
        digits = agent.updaters["digits"]
        wait_for(lambda: digits.slot.version == 3, what="v3 served after the restart")
        assert sorted(p.name for p in s.versions.iterdir()) == ["2", "3"]  # leftover cleaned
        operator.assign(1, rollback=True)
        # Not installed any more: fetched again, verified and switched to like any version.
        wait_for(committed(config, 1), what="rolled back to a freshly fetched v1")
        assert digits.slot.version == 1
        assert model_status(digits).version == 1


def test_a_half_deleted_version_is_not_a_rollback_target(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """What an older agent killed inside its deletion left: a directory without its manifest."""
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    operator.publish(make_bundle(keyring, 2))
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config):
        operator.assign(1)
        wait_for(committed(config, 1))
        operator.assign(2)
        wait_for(committed(config, 2))
    s = store(config)
    (s.version_dir(1) / "manifest.json").unlink()
    assert s.installed() == [2]
    with agent_thread(config) as agent:
        digits = agent.updaters["digits"]
        wait_for(lambda: digits.slot.version == 2)
        operator.assign(1, rollback=True)
        wait_for(committed(config, 1), what="v1 fetched again and switched to")
        assert digits.slot.version == 1
        directory = s.version_dir(1)
        verify_bundle(load_trust_root(keyring / "root.json"), read_unpacked(directory), "v1")


def test_a_rollback_onto_a_version_that_no_longer_verifies_is_refused(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    operator.publish(make_bundle(keyring, 2))
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config) as agent:
        operator.assign(1)
        wait_for(committed(config, 1))
        operator.assign(2)
        wait_for(committed(config, 2))
        model = store(config).version_dir(1) / "model.onnx"
        data = bytearray(model.read_bytes())
        data[100] ^= 0xFF  # same length: the directory is complete, its bytes are not v1's
        model.write_bytes(bytes(data))
        digits = agent.updaters["digits"]
        serial = operator.assign(1, rollback=True).serial
        wait_for(lambda: digits.outcome is not None and digits.outcome.result == "refused")
        assert digits.outcome is not None
        assert "refused rollback of digits to v1" in digits.outcome.reason
        assert "still serving v2" in digits.outcome.reason
        assert digits.slot.version == 2 and store(config).current() == 2
        journal = store(config).load_journal()
        assert journal.state is State.COMMITTED and journal.serial != serial
        wait_for(
            lambda: (
                (retained_status(broker) or {})
                .get("models", {})
                .get("digits", {})
                .get("last_result")
                is not None
                and retained_status(broker)["models"]["digits"]["last_result"]["result"]
                == "refused"
            )
        )
        status = retained_status(broker)
        assert status is not None and status["models"]["digits"]["version"] == 2


def test_a_key_rotation_keeps_the_installed_model_serving_until_it_is_re_signed(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config) as agent:
        operator.assign(1)
        wait_for(committed(config, 1))
        rotate_online_key(keyring, revoke=keyring / "online-1.key")
        new_key = max(keyring.glob("online-*.key"), key=lambda p: int(p.stem.split("-")[1]))
        with operator.link() as link:
            send(link, operator.topics, operator.repository().refresh())
        # The device learns the new root with the next assignment (signed by the new key);
        # that update fails its self-test, so v1, signed by the revoked key, stays.
        operator.publish(resigned(make_bundle(keyring, 2, break_golden=True), new_key))
        failed = operator.assign(2).serial
        wait_for(
            lambda: (
                store(config).load_journal().serial == failed
                and store(config).load_journal().state is State.FAILED
            ),
            what="v2 failed its self-test",
        )
        assert agent.updaters["digits"].slot.version == 1
    cached_root = json.loads((tmp_path / "dev" / "state" / "tuf" / "root.json").read_bytes())
    assert cached_root["signed"]["version"] == 2  # online-1 is revoked on the device too

    with agent_thread(config) as agent:  # the reboot
        digits = agent.updaters["digits"]
        wait_for(lambda: digits.slot.version == 1, what="v1 still served after the restart")
        status = model_status(digits)
        assert status.version == 1 and status.signed_by_revoked_key is True
        assert "verified at install" in status.trust_note
        wait_for(
            lambda: (
                ((retained_status(broker) or {}).get("models") or {})
                .get("digits", {})
                .get("signed_by_revoked_key")
                is True
            ),
            what="status reports the revoked signer",
        )
        # The same version, re-signed with the new key: installed over the held copy.
        operator.publish(resigned(make_bundle(keyring, 1), new_key))
        serial = operator.assign(1).serial
        wait_for(
            lambda: committed(config, 1)() and store(config).load_journal().serial == serial,
            what="re-signed v1 committed",
        )
        assert digits.slot.version == 1
        assert model_status(digits).signed_by_revoked_key is False
        directory = store(config).version_dir(1)
        root = agent.trusted_root()
        verify_bundle(root, read_unpacked(directory), str(directory))


def test_a_release_signed_by_a_revoked_key_is_still_refused(
    tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    """What a device installed keeps serving; nothing new signed by a revoked key gets in."""
    operator = Operator(keyring, tmp_path / "repo", broker)
    operator.publish(make_bundle(keyring, 1))
    config = write_config(tmp_path / "dev", broker, keyring / "root.json")
    with agent_thread(config) as agent:
        operator.assign(1)
        wait_for(committed(config, 1))
        rotate_online_key(keyring, revoke=keyring / "online-1.key")
        with operator.link() as link:
            send(link, operator.topics, operator.repository().refresh())
        operator.publish(make_bundle(keyring, 2))  # signed by the revoked online-1
        operator.assign(2)
        digits = agent.updaters["digits"]
        wait_for(lambda: digits.outcome is not None and digits.outcome.result == "failed")
        assert digits.slot.version == 1 and store(config).installed() == [1]

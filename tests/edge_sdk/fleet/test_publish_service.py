"""``fleet publish|assign``'s checks and what is opened before the broker
(edge_sdk.fleet.publish_service): no broker; the end to end runs are in
tests/edge_sdk/cli/test_fleet_publish_cmd.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_sdk.core.bundle import read_bundle, write_bundle
from edge_sdk.core.wire.topics import Topics
from edge_sdk.errors import InputError
from edge_sdk.fleet.publish_service import (
    PublishTarget,
    check_assign,
    open_store_options,
    sign_bundle_file,
)
from edge_sdk.fleet.session import BrokerAddress
from testing.agents import make_bundle


@pytest.mark.parametrize(
    ("device", "group", "message"),
    [
        (None, None, "pass exactly one of --device ID or --group NAME"),
        ("a", "b", "pass exactly one of --device ID or --group NAME"),
        ("a/b", None, "--device: 'a/b' must be"),
        (None, "+", "--group: '+' must be"),
    ],
)
def test_assign_refuses_a_bad_scope(device: str | None, group: str | None, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        check_assign("digits", "1", device, group)


def test_assign_targets_a_device_or_a_group() -> None:
    assert check_assign("digits", "1.2.3", "cam-1", None).scope == "devices/cam-1"
    target = check_assign("digits", "7", None, "lobby")
    assert (target.version, target.label, target.scope) == (7, "7", "groups/lobby")


def test_the_store_options_need_a_store() -> None:
    assert open_store_options(None, [], None, True) == (None, [])
    for urls, endpoint, broker_chunks in ((["https://x/"], None, True), ([], "https://e", True),
                                          ([], None, False)):  # fmt: skip
        with pytest.raises(InputError, match="need --store"):
            open_store_options(None, urls, endpoint, broker_chunks)


def test_an_unsigned_bundle_is_signed_and_written_back_once(tmp_path: Path, keyring: Path) -> None:
    path = tmp_path / "digits-1.edgebundle"
    write_bundle(path, make_bundle(keyring, 1, signed=False))
    parsed, signed_now = sign_bundle_file(path, keyring)
    assert signed_now >= 1 and read_bundle(path) == parsed
    assert sign_bundle_file(path, keyring)[1] == 0  # already signed: the file is left alone


def test_the_ledger_is_keyed_by_the_normalised_broker_address(
    tmp_path: Path, keyring: Path
) -> None:
    topics = Topics("edge", "default")
    short = BrokerAddress.parse("mqtt://127.0.0.1")
    full = BrokerAddress.parse("mqtt://127.0.0.1:1883")
    first = PublishTarget.open(tmp_path / "repo", keyring, short, topics, fresh=False)
    first.ledger.record(["ab" * 32])
    first.ledger.save()
    again = PublishTarget.open(tmp_path / "repo", keyring, full, topics, fresh=False)
    assert again.ledger.path == first.ledger.path and "ab" * 32 in again.ledger
    fresh = PublishTarget.open(tmp_path / "repo", keyring, full, topics, fresh=True)
    assert "ab" * 32 not in fresh.ledger  # --full: sent again, whatever the ledger says

"""The MQTT topic layout (docs/protocol.md) and the identifiers allowed in it."""

from __future__ import annotations

import hashlib

import pytest

from edge_sdk.core.wire.topics import Topics, check_identifier
from edge_sdk.errors import InputError

SHA = hashlib.sha256(b"chunk").hexdigest()


@pytest.fixture()
def topics() -> Topics:
    return Topics("acme/edge", "north")


def test_layout_of_every_topic(topics: Topics) -> None:
    assert topics.root == "acme/edge/north"
    assert topics.metadata == "acme/edge/north/repo/metadata"
    assert topics.metadata_file("2.root.json") == "acme/edge/north/repo/metadata/2.root.json"
    assert topics.chunk(SHA) == f"acme/edge/north/repo/chunks/{SHA}"
    assert topics.desired_device("cam-01", "digits") == (
        "acme/edge/north/desired/devices/cam-01/digits"
    )
    assert topics.desired_group("canary", "digits") == (
        "acme/edge/north/desired/groups/canary/digits"
    )
    assert topics.desired_filters("cam-01", "canary") == (
        "acme/edge/north/desired/devices/cam-01/+",
        "acme/edge/north/desired/groups/canary/+",
    )
    assert topics.device("cam-01") == "acme/edge/north/devices/cam-01"
    assert topics.status("cam-01") == "acme/edge/north/devices/cam-01/status"
    assert topics.presence("cam-01") == "acme/edge/north/devices/cam-01/presence"
    assert topics.events("cam-01") == "acme/edge/north/devices/cam-01/events"


def test_single_part_prefix() -> None:
    assert Topics("edge", "f1").status("d") == "edge/f1/devices/d/status"


def test_everything_a_device_writes_is_under_its_own_subtree(topics: Topics) -> None:
    own = topics.device("cam-01") + "/"
    for topic in (topics.status("cam-01"), topics.presence("cam-01"), topics.events("cam-01")):
        assert topic.startswith(own)
        assert not topic.startswith(topics.device("cam-0") + "/")


@pytest.mark.parametrize(
    ("topic", "scope"),
    [
        ("acme/edge/north/desired/devices/cam-01/digits", ("devices/cam-01", "digits")),
        ("acme/edge/north/desired/groups/canary/digits", ("groups/canary", "digits")),
        ("acme/edge/north/desired/groups/all/det.v2", ("groups/all", "det.v2")),
    ],
)
def test_desired_scope_of_a_desired_state_topic(
    topics: Topics, topic: str, scope: tuple[str, str]
) -> None:
    assert topics.desired_scope(topic) == scope


def test_desired_scope_inverts_the_desired_topics(topics: Topics) -> None:
    assert topics.desired_scope(topics.desired_device("d1", "m")) == ("devices/d1", "m")
    assert topics.desired_scope(topics.desired_group("g1", "m")) == ("groups/g1", "m")


@pytest.mark.parametrize(
    "topic",
    [
        "acme/edge/south/desired/devices/cam-01/digits",  # another fleet
        "acme/edge/north2/desired/devices/cam-01/digits",  # a fleet whose name extends ours
        "other/edge/north/desired/devices/cam-01/digits",  # another prefix
        "acme/edge/north/devices/cam-01/status",  # not desired state
        "acme/edge/north/repo/chunks/" + SHA,
        "acme/edge/north/desired/models/cam-01/digits",  # neither devices nor groups
        "acme/edge/north/desired/devices/cam-01",  # too shallow
        "acme/edge/north/desired/devices",
        "acme/edge/north/desired/",
        "acme/edge/north/desired/devices/cam-01/digits/extra",  # too deep
        "acme/edge/north/desired/groups/canary/digits/",
        "",
    ],
)
def test_desired_scope_of_anything_else_is_none(topics: Topics, topic: str) -> None:
    assert topics.desired_scope(topic) is None


@pytest.mark.parametrize(
    "value", ["cam-01", "a", "0", "Device_7", "node.local", "x" * 64, "A-b.c_D-9"]
)
def test_check_identifier_accepts_typical_ids(value: str) -> None:
    assert check_identifier(value, "device id") == value


@pytest.mark.parametrize(
    "value",
    [
        "cam+01",
        "+",
        "cam#",
        "#",
        "cam/01",
        "/",
        "",
        "x" * 65,
        ".hidden",
        "-dash",
        "_under",
        "cam 01",
        "caméra",
        "cam\x0001",
    ],
)
def test_check_identifier_refuses(value: str) -> None:
    with pytest.raises(InputError) as err:
        check_identifier(value, "device id")
    message = str(err.value)
    assert "device id" in message and "\n" not in message


@pytest.mark.parametrize("value", ["cam-01\n", "x" * 64 + "\n"])
def test_check_identifier_refuses_a_trailing_newline(value: str) -> None:
    with pytest.raises(InputError):
        check_identifier(value, "device id")


@pytest.mark.parametrize("fleet", ["", "a/b", "+", "#", ".x", "x" * 65])
def test_topics_refuse_a_bad_fleet(fleet: str) -> None:
    with pytest.raises(InputError, match="fleet"):
        Topics("acme", fleet)


@pytest.mark.parametrize("prefix", ["", "/acme", "acme/", "acme//edge", "acme/+", "acme/#/x"])
def test_topics_refuse_a_bad_prefix(prefix: str) -> None:
    with pytest.raises(InputError, match="prefix"):
        Topics(prefix, "north")


@pytest.mark.parametrize(
    "name",
    [
        SHA.upper(),  # hex digests are lower case
        SHA[:-1],
        SHA + "0",
        "g" * 64,
        hashlib.sha1(b"chunk").hexdigest(),
        "+",
        "#",
        SHA[:32] + "/" + SHA[33:],
        "",
    ],
)
def test_chunk_refuses_a_name_that_is_not_a_sha256(topics: Topics, name: str) -> None:
    with pytest.raises(InputError, match="sha256"):
        topics.chunk(name)


def test_chunk_refuses_a_digest_with_a_trailing_newline(topics: Topics) -> None:
    with pytest.raises(InputError):
        topics.chunk(SHA + "\n")

"""Signed assignments: sign with an online key, verify against root.json, refuse everything else
with a typed error whose message is about the assignment."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]
from tuf.api.metadata import Metadata, Targets  # type: ignore[attr-defined]

from edge_sdk.core.trust import TrustRoot, sign_files
from edge_sdk.core.wire.assignment import Assignment, sign_assignment, verify_assignment
from edge_sdk.errors import (
    BundleError,
    EdgeSdkError,
    ExpiredError,
    InputError,
    TamperedError,
    ThresholdError,
    TrustError,
    UnknownKeyError,
    UnsignedError,
)
from edge_sdk.signing.keys import load_signer, load_trust_root

LATER = datetime.now(UTC) + timedelta(days=30)
EARLIER = datetime.now(UTC) - timedelta(days=1)
SERIAL = 424242
ASSIGNMENT = Assignment("digits", 3, "devices/cam-01", SERIAL)


def online(keyring: Path, number: int = 1) -> CryptoSigner:
    return load_signer(keyring / f"online-{number}.key")


def trust(keyring: Path) -> TrustRoot:
    return load_trust_root(keyring / "root.json")


def signed(keyring: Path, assignment: Assignment = ASSIGNMENT) -> bytes:
    return sign_assignment(assignment, [online(keyring)], expires=LATER)


def signed_custom_doc(keyring: Path, custom: dict[str, Any] | None) -> bytes:
    """Properly signed targets metadata holding ``custom`` as given (bypassing Assignment)."""
    return sign_files({}, [online(keyring)], expires=LATER, custom=custom)


def edit_signed(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1
    return data.replace(old, new)


def refused(
    error: type[EdgeSdkError], root: TrustRoot, data: bytes, now: datetime | None = None
) -> str:
    """The one-line message of the ``error`` that verifying ``data`` raises."""
    with pytest.raises(error) as err:
        verify_assignment(root, data, now=now)
    message = str(err.value)
    assert message and "\n" not in message
    return message


# -- the good path -----------------------------------------------------------------------------


def test_sign_then_verify_gives_the_same_assignment(signing_keys: Path) -> None:
    assert verify_assignment(trust(signing_keys), signed(signing_keys)) == ASSIGNMENT


def test_a_group_rollback_assignment_round_trips(signing_keys: Path) -> None:
    group = Assignment("det.v2", 12, "groups/canary", 3, rollback=True)
    assert verify_assignment(trust(signing_keys), signed(signing_keys, group)) == group


def test_any_online_key_of_the_keyring_is_trusted(signing_keys: Path) -> None:
    data = sign_assignment(ASSIGNMENT, [online(signing_keys, 2)], expires=LATER)
    assert verify_assignment(trust(signing_keys), data) == ASSIGNMENT


def test_the_wire_form_is_targets_metadata_with_the_assignment_in_custom(
    signing_keys: Path,
) -> None:
    md = Metadata[Targets].from_bytes(signed(signing_keys))
    assert md.signed.targets == {}
    assert md.signed.unrecognized_fields["custom"] == {"assignment": ASSIGNMENT.to_json()}


def test_threshold_two_is_met_by_two_signatures(signing_keys_t2: Path) -> None:
    data = sign_assignment(
        ASSIGNMENT, [online(signing_keys_t2, 1), online(signing_keys_t2, 2)], expires=LATER
    )
    assert verify_assignment(trust(signing_keys_t2), data) == ASSIGNMENT


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"not json", b"{}", b'{"signed": {}, "signatures": []}'])
def test_garbage_is_a_bundle_error(signing_keys: Path, data: bytes) -> None:
    refused(BundleError, trust(signing_keys), data)


def test_other_metadata_than_targets_is_a_bundle_error(signing_keys: Path) -> None:
    root_json = (signing_keys / "root.json").read_bytes()
    assert "root" in refused(BundleError, trust(signing_keys), root_json)


def test_metadata_without_signatures_is_unsigned(signing_keys: Path) -> None:
    doc = json.loads(signed(signing_keys))
    doc["signatures"] = []
    refused(UnsignedError, trust(signing_keys), json.dumps(doc).encode())


def test_signed_by_another_keyring_is_an_unknown_key(
    signing_keys: Path, signing_keys_t2: Path
) -> None:
    foreign = online(signing_keys_t2)
    data = sign_assignment(ASSIGNMENT, [foreign], expires=LATER)
    message = refused(UnknownKeyError, trust(signing_keys), data)
    assert foreign.public_key.keyid[:12] in message


def test_signed_by_the_root_key_is_an_unknown_key(signing_keys: Path) -> None:
    data = sign_assignment(ASSIGNMENT, [load_signer(signing_keys / "root.key")], expires=LATER)
    refused(UnknownKeyError, trust(signing_keys), data)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (str(SERIAL).encode(), str(SERIAL + 1).encode()),
        (b'"rollback": false', b'"rollback": true'),
        (b'"version": 3', b'"version": 4'),
        (b"devices/cam-01", b"devices/cam-02"),
    ],
)
def test_a_changed_byte_in_the_signed_part_is_tampering(
    signing_keys: Path, old: bytes, new: bytes
) -> None:
    data = edit_signed(signed(signing_keys), old, new)
    refused(TamperedError, trust(signing_keys), data)


def test_expires_in_the_past_is_expired(signing_keys: Path) -> None:
    data = sign_assignment(ASSIGNMENT, [online(signing_keys)], expires=EARLIER)
    assert "expired" in refused(ExpiredError, trust(signing_keys), data)


def test_expiry_is_judged_at_the_given_moment(signing_keys: Path) -> None:
    data = signed(signing_keys)
    root = trust(signing_keys)
    assert verify_assignment(root, data, now=LATER - timedelta(hours=1)) == ASSIGNMENT
    refused(ExpiredError, root, data, now=LATER + timedelta(hours=1))


def test_one_signature_below_threshold_two(signing_keys_t2: Path) -> None:
    message = refused(ThresholdError, trust(signing_keys_t2), signed(signing_keys_t2))
    assert "1 of 2" in message


@pytest.mark.parametrize("custom", [None, {}, {"profile": "x86-64"}])
def test_signed_metadata_without_an_assignment_is_refused(
    signing_keys: Path, custom: dict[str, Any] | None
) -> None:
    data = signed_custom_doc(signing_keys, custom)
    assert "no assignment" in refused(BundleError, trust(signing_keys), data)


GOOD = ASSIGNMENT.to_json()


@pytest.mark.parametrize(
    "doc",
    [
        {k: v for k, v in GOOD.items() if k != "version"},
        {k: v for k, v in GOOD.items() if k != "scope"},
        {k: v for k, v in GOOD.items() if k != "serial"},
        {**GOOD, "version": "three"},
        {**GOOD, "version": None},
        {**GOOD, "serial": [1]},
        {**GOOD, "version": 0},
        {**GOOD, "serial": -4},
        {**GOOD, "scope": "fleet/cam-01"},
        {**GOOD, "scope": "devices/"},
        ["digits", 3],
        "digits@3",
        None,
    ],
)
def test_malformed_assignment_fields_are_bundle_errors(signing_keys: Path, doc: Any) -> None:
    data = signed_custom_doc(signing_keys, {"assignment": doc})
    assert "assignment" in refused(BundleError, trust(signing_keys), data)


INVALID_NAMES = [
    pytest.param({**GOOD, "model": "../etc"}, id="model-name"),
    pytest.param({**GOOD, "scope": "devices/cam+01"}, id="device-id"),
    pytest.param({**GOOD, "scope": "groups/a/b"}, id="group-id"),
]


@pytest.mark.parametrize("doc", INVALID_NAMES)
def test_invalid_names_in_a_signed_assignment_are_refused(signing_keys: Path, doc: Any) -> None:
    # The daemon refuses any EdgeSdkError (agent/daemon.py); these must never be accepted.
    data = signed_custom_doc(signing_keys, {"assignment": doc})
    refused(EdgeSdkError, trust(signing_keys), data)


@pytest.mark.parametrize("doc", INVALID_NAMES)
def test_invalid_names_in_a_signed_assignment_are_bundle_errors(
    signing_keys: Path, doc: Any
) -> None:
    data = signed_custom_doc(signing_keys, {"assignment": doc})
    refused(BundleError, trust(signing_keys), data)


@pytest.mark.parametrize(
    "change",
    [{"rollback": "false"}, {"model": None}],
    ids=["rollback-string", "null-model"],
)
def test_wrongly_typed_fields_are_not_silently_coerced(
    signing_keys: Path, change: dict[str, Any]
) -> None:
    data = signed_custom_doc(signing_keys, {"assignment": {**GOOD, **change}})
    refused(BundleError, trust(signing_keys), data)


# -- messages name the assignment --------------------------------------------------------------


def non_object_custom(keyring: Path) -> bytes:
    targets = Targets(version=1, expires=LATER.replace(microsecond=0))
    targets.unrecognized_fields["custom"] = "assignment"
    md = Metadata(targets)
    md.sign(online(keyring))
    return md.to_bytes()


def unsigned(keyring: Path) -> bytes:
    doc = json.loads(signed(keyring))
    doc["signatures"] = []
    return json.dumps(doc).encode()


CASES: dict[str, Callable[[Path, Path], tuple[Path, bytes]]] = {
    "garbage": lambda k, _: (k, b"garbage"),
    "unsigned": lambda k, _: (k, unsigned(k)),
    "unknown-key": lambda k, other: (k, signed(other)),
    "threshold": lambda _, other: (other, signed(other)),
    "expired": lambda k, _: (k, sign_assignment(ASSIGNMENT, [online(k)], expires=EARLIER)),
    "no-assignment": lambda k, _: (k, signed_custom_doc(k, {})),
    "malformed": lambda k, _: (k, signed_custom_doc(k, {"assignment": {"model": "m"}})),
    "tampered": lambda k, _: (k, edit_signed(signed(k), b'"version": 3', b'"version": 4')),
    "custom-not-an-object": lambda k, _: (k, non_object_custom(k)),
}


@pytest.mark.parametrize(
    "case",
    list(CASES),
)
def test_error_messages_say_assignment_not_bundle(
    signing_keys: Path, signing_keys_t2: Path, case: str
) -> None:
    keyring, data = CASES[case](signing_keys, signing_keys_t2)
    message = refused(EdgeSdkError, trust(keyring), data)
    assert "assignment" in message
    assert "bundle" not in message


def test_trust_failures_are_trust_errors_and_payload_failures_are_not(
    signing_keys: Path, signing_keys_t2: Path
) -> None:
    for case in ("unsigned", "unknown-key", "threshold", "expired", "tampered"):
        keyring, data = CASES[case](signing_keys, signing_keys_t2)
        refused(TrustError, trust(keyring), data)
    for case in ("garbage", "no-assignment", "malformed"):
        keyring, data = CASES[case](signing_keys, signing_keys_t2)
        with pytest.raises(BundleError):
            verify_assignment(trust(keyring), data)


# -- the constructor ---------------------------------------------------------------------------


def test_json_round_trip_and_defaults() -> None:
    group = Assignment("m", 2, "groups/all", 5, rollback=True)
    assert Assignment.from_json(group.to_json()) == group
    assert Assignment.from_json(
        {"model": "m", "version": 1, "scope": "devices/d", "serial": 1}
    ) == (Assignment("m", 1, "devices/d", 1, rollback=False))


@pytest.mark.parametrize(
    "scope", ["cam-01", "device/cam-01", "devices", "devices/", "groups", "fleet/x", "/devices/x"]
)
def test_a_scope_that_is_not_devices_or_groups_is_refused(scope: str) -> None:
    with pytest.raises(BundleError, match="scope"):
        Assignment("m", 1, scope, 1)


@pytest.mark.parametrize("scope", ["devices/cam+01", "devices/#", "groups/a/b", "devices/.x"])
def test_a_bad_device_or_group_id_is_refused(scope: str) -> None:
    with pytest.raises(InputError):
        Assignment("m", 1, scope, 1)


@pytest.mark.parametrize("model", ["", "a/b", "-m", "m+", "x" * 65])
def test_a_bad_model_name_is_refused(model: str) -> None:
    with pytest.raises(InputError, match="model name"):
        Assignment(model, 1, "devices/d", 1)


@pytest.mark.parametrize(("version", "serial"), [(0, 1), (-1, 1), (1, 0), (1, -5)])
def test_version_and_serial_must_be_positive(version: int, serial: int) -> None:
    with pytest.raises(BundleError, match="positive"):
        Assignment("m", version, "devices/d", serial)

"""Desired state is what any party that can publish to the broker sends a device: however
hostile, verifying it returns an assignment or raises one of our errors, in one line, and
nothing else (issue 11, class 1: a float in an unsigned envelope used to kill the agent)."""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sdk.core.trust import TrustRoot
from edge_sdk.core.wire.assignment import Assignment, sign_assignment, verify_assignment
from edge_sdk.errors import BundleError, EdgeSdkError
from edge_sdk.signing.keys import load_signer, load_trust_root
from tests.fuzz import mutations
from tests.hostile_json import JSONISH, edited, encode

LATER = datetime.now(UTC) + timedelta(days=30)


def signed(keyring: Path, assignment: Assignment, key: int = 1) -> bytes:
    return sign_assignment(assignment, [load_signer(keyring / f"online-{key}.key")], expires=LATER)


def valid_payloads(keyring: Path) -> list[bytes]:
    return [
        signed(keyring, Assignment("digits", 3, "devices/dev-1", 424242)),
        signed(keyring, Assignment("det.v2", 12, "groups/canary", 7, rollback=True), key=2),
    ]


def outcome(root: TrustRoot, data: bytes) -> Assignment | EdgeSdkError:
    """Verify; only an Assignment or our own one-line error may come out."""
    try:
        return verify_assignment(root, data)
    except EdgeSdkError as e:
        message = str(e)
        assert message and "\n" not in message, repr(message)
        return e


def doc_of(data: bytes) -> dict[str, Any]:
    doc = json.loads(data)
    assert isinstance(doc, dict)
    return doc


# -- the examples from the issue: each raised a foreign error before the fix ------------------


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("signed", "custom", "note"), 1.5),  # a float anywhere in the signed part
        (("signed", "custom", "assignment", "serial"), 5.0),
        (("signed", "version"), 1.5),
        (("signed", "custom", "assignment", "version"), float("nan")),
        (("signed", "expires_in"), float("inf")),
        (("signatures", 0, "keyid"), 5),  # a keyid that is not a string
        (("signatures", 0, "keyid"), None),
        (("signatures", 0, "sig"), {"x": 1}),
    ],
)
def test_an_unsigned_envelope_with_a_float_or_a_bad_keyid_is_malformed(
    signing_keys: Path, where: tuple[str | int, ...], value: object
) -> None:
    doc = doc_of(valid_payloads(signing_keys)[0])
    node: Any = doc
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    with pytest.raises(BundleError) as err:
        verify_assignment(load_trust_root(signing_keys / "root.json"), encode(doc))
    assert "not valid TUF targets metadata" in str(err.value)


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the parser's recursion
        b'{"signed": ' * 50_000 + b"1" + b"}" * 50_000,
        b'{"signed": {"version": ' + b"9" * 10_000 + b"}}",  # over Python's int digits limit
        b"NaN",
        b'"\\ud800"',
        b"\xff\xfe{}",
        b"\x00" * 1000,
    ],
    ids=["deep-list", "deep-object", "huge-int", "nan", "lone-surrogate", "bom", "nul"],
)
def test_pathological_json_is_a_bundle_error(signing_keys: Path, data: bytes) -> None:
    with pytest.raises(BundleError):
        verify_assignment(load_trust_root(signing_keys / "root.json"), data)


# -- Hypothesis: structure ---------------------------------------------------------------------


@settings(max_examples=300)
@given(data=st.data())
def test_an_edited_signed_assignment_is_refused_with_our_error_only(
    signing_keys: Path, data: st.DataObject
) -> None:
    root = load_trust_root(signing_keys / "root.json")
    payload = data.draw(st.sampled_from(valid_payloads(signing_keys)))
    result = outcome(root, encode(data.draw(edited(doc_of(payload)))))
    if isinstance(result, Assignment):  # an edit outside the signed part (an extra field)
        assert result == verify_assignment(root, payload)


@given(
    signed_part=st.dictionaries(st.text(max_size=10), JSONISH, max_size=6),
    custom=JSONISH,
    signatures=JSONISH,
)
def test_a_stranger_envelope_is_refused_with_our_error_only(
    signing_keys: Path, signed_part: dict[str, Any], custom: Any, signatures: Any
) -> None:
    doc = {
        "signed": {
            "_type": "targets",
            "spec_version": "1.0.31",
            "version": 1,
            "expires": "2099-01-01T00:00:00Z",
            "targets": {},
            **signed_part,
            "custom": {"assignment": custom},
        },
        "signatures": signatures,
    }
    result = outcome(load_trust_root(signing_keys / "root.json"), encode(doc))
    assert isinstance(result, EdgeSdkError)  # nothing unsigned is ever an assignment


@given(keyid=JSONISH, sig=JSONISH)
def test_any_keyid_and_sig_in_a_real_envelope_is_refused_with_our_error_only(
    signing_keys: Path, keyid: Any, sig: Any
) -> None:
    doc = doc_of(valid_payloads(signing_keys)[0])
    doc["signatures"] = [{"keyid": keyid, "sig": sig}, *doc["signatures"]]
    outcome(load_trust_root(signing_keys / "root.json"), encode(doc))


# -- the seeded byte-level fuzz loop ----------------------------------------------------------


def test_fuzzed_signed_assignments_raise_only_our_errors_in_bounded_memory(
    signing_keys: Path,
) -> None:
    root = load_trust_root(signing_keys / "root.json")
    seeds = valid_payloads(signing_keys)
    expected = {verify_assignment(root, s) for s in seeds}
    accepted = refused = 0
    tracemalloc.start()
    try:
        for case in mutations(seed=1101, seeds=seeds, count=4000):
            result = outcome(root, case)
            if isinstance(result, Assignment):
                # A mutation can only reach an assignment through whitespace or unsigned fields.
                assert result in expected, (case, result)
                accepted += 1
            else:
                refused += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert accepted >= len(seeds) and refused > 3000
    assert peak < 64 << 20, f"peak {peak} bytes verifying payloads of a few KiB"

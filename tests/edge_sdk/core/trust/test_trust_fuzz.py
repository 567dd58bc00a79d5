"""Trust roots and bundle signatures under hostile input: a root.json a device pins (or a cached
one it walked to), and the signatures file of a bundle, however garbled, give one of our errors
in one line and nothing else; a trust-root path that is not a root is refused when loaded
(issue 11, classes 1 and 12)."""

from __future__ import annotations

import json
import os
import threading
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sdk.core.trust.pinned_root import TrustRoot
from edge_sdk.core.trust.signatures import sign_files, verify_files
from edge_sdk.errors import EdgeSdkError, KeyFileError
from edge_sdk.signing.keys import MAX_ROOT_BYTES, load_signer, load_trust_root
from tests.fuzz import mutations
from tests.hostile_json import edited, encode

LATER = datetime.now(UTC) + timedelta(days=30)
FILES = {"manifest.json": b'{"name": "digits"}', "model.onnx": b"\x08\x07" * 64}


def one_line(e: EdgeSdkError) -> None:
    assert str(e) and "\n" not in str(e), repr(str(e))


def root_outcome(data: bytes) -> TrustRoot | EdgeSdkError:
    try:
        return TrustRoot.from_bytes(data, "root.json")
    except EdgeSdkError as e:
        one_line(e)
        return e


def signatures_outcome(root: TrustRoot, data: bytes) -> object:
    try:
        return verify_files(root, data, FILES)
    except EdgeSdkError as e:
        one_line(e)
        return e


def bundle_signatures(keyring: Path) -> bytes:
    return sign_files(
        FILES, [load_signer(keyring / "online-1.key")], expires=LATER, custom={"name": "digits"}
    )


# -- root.json ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "value"),
    [
        (("signed", "roles", "root", "threshold"), 1.5),
        (("signed", "roles", "root", "threshold"), True),
        (("signed", "roles", "targets", "keyids"), [7]),
        (("signed", "version"), float("nan")),
        (("signed", "note"), 0.1),
        (("signatures", 0, "keyid"), 42),
        (("signatures", 0, "sig"), []),
    ],
)
def test_a_root_with_a_float_or_a_non_string_keyid_is_a_key_file_error(
    signing_keys: Path, edit: tuple[str | int, ...], value: object
) -> None:
    doc = json.loads((signing_keys / "root.json").read_bytes())
    node: Any = doc
    for step in edit[:-1]:
        node = node[step]
    node[edit[-1]] = value
    with pytest.raises(KeyFileError) as err:
        TrustRoot.from_bytes(encode(doc), "root.json")
    assert "root.json" in str(err.value)


@settings(max_examples=300)
@given(data=st.data())
def test_an_edited_root_is_refused_with_our_error_only(
    signing_keys: Path, data: st.DataObject
) -> None:
    original = (signing_keys / "root.json").read_bytes()
    result = root_outcome(encode(data.draw(edited(json.loads(original)))))
    if isinstance(result, TrustRoot):  # only an edit outside the signed part survives
        assert result.root == TrustRoot.from_bytes(original, "x").root


def test_fuzzed_roots_raise_only_our_errors(signing_keys: Path, signing_keys_t2: Path) -> None:
    seeds = [(k / "root.json").read_bytes() for k in (signing_keys, signing_keys_t2)]
    refused = 0
    for case in mutations(seed=1112, seeds=seeds, count=3000):
        refused += isinstance(root_outcome(case), EdgeSdkError)
    assert refused > 2000


# -- a bundle's signatures file ------------------------------------------------------------------


@settings(max_examples=300)
@given(data=st.data())
def test_edited_bundle_signatures_are_refused_with_our_error_only(
    signing_keys: Path, data: st.DataObject
) -> None:
    root = load_trust_root(signing_keys / "root.json")
    original = bundle_signatures(signing_keys)
    signatures_outcome(root, encode(data.draw(edited(json.loads(original)))))


def test_fuzzed_bundle_signatures_raise_only_our_errors_in_bounded_memory(
    signing_keys: Path,
) -> None:
    root = load_trust_root(signing_keys / "root.json")
    seed = bundle_signatures(signing_keys)
    refused = 0
    tracemalloc.start()
    try:
        for case in mutations(seed=1113, seeds=[seed], count=3000):
            refused += isinstance(signatures_outcome(root, case), EdgeSdkError)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused > 2000
    assert peak < 64 << 20


# -- a trust-root path that is not a root (class 12) --------------------------------------------


def not_a_root(tmp_path: Path, keyring: Path, kind: str) -> Path:
    path = tmp_path / "root.json"
    if kind == "public key":
        path.write_bytes((keyring / "online-1.pub").read_bytes())
    elif kind == "private key":
        path.write_bytes((keyring / "online-1.key").read_bytes())
    elif kind == "targets metadata":
        path.write_bytes(bundle_signatures(keyring))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "blank":
        path.write_bytes(b" \n\t\n")
    elif kind == "garbage":
        path.write_bytes(os.urandom(4096))
    elif kind == "huge":
        with path.open("wb") as f:  # sparse: no disk used
            f.truncate(MAX_ROOT_BYTES * 64)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "edited root":
        doc = json.loads((keyring / "root.json").read_bytes())
        doc["signed"]["version"] = 99
        path.write_bytes(json.dumps(doc).encode())
    elif kind == "directory without root.json":
        path.mkdir()
    return path


KINDS = [
    "public key",
    "private key",
    "targets metadata",
    "empty",
    "blank",
    "garbage",
    "huge",
    "fifo",
    "edited root",
    "directory without root.json",
]


@pytest.mark.parametrize("kind", KINDS)
def test_a_trust_root_that_is_not_a_root_is_one_line_naming_the_file(
    tmp_path: Path, signing_keys: Path, kind: str
) -> None:
    path = not_a_root(tmp_path, signing_keys, kind)
    failure: list[BaseException] = []

    def load() -> None:
        try:
            load_trust_root(path)
        except BaseException as e:
            failure.append(e)

    worker = threading.Thread(target=load, daemon=True)  # a FIFO must not hang the test
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), f"load_trust_root blocked on a {kind}"
    assert failure and isinstance(failure[0], KeyFileError), failure
    one_line(failure[0])
    assert str(path) in str(failure[0])

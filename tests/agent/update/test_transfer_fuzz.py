"""Hostile bytes against what moves a release onto the device: the chunk check, the release
reader over signed targets, and python-tuf's metadata reader as the agent runs it. Only our
own errors may come out, and a length violation is final (never a retried TransferError)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tuf.api.metadata import TargetFile

from agent.update.release import Limits, read_release
from agent.update.transfer import MAX_CHUNK_TRIES, chunk_problem
from agent.update.tuf_mqtt import TufSession
from edge_sdk.errors import (
    EdgeSdkError,
    OversizeError,
    TamperedError,
    TransferError,
    WrongTargetError,
)
from edge_sdk.signing.repository import Repository
from testing.agents import make_bundle, matmul_model
from tests.fuzz import mutations

CHUNK = bytes(range(256)) * 64
CHUNK_SHA = hashlib.sha256(CHUNK).hexdigest()
MAX_PACKET = (1 << 20) + 4096
LIMITS = Limits(max_chunk_bytes=1 << 20, max_artifact_bytes=64 << 20)
PREFIX = "edge/default/repo/metadata"


# -- the chunk check --------------------------------------------------------------------------


@given(st.binary(max_size=20_000) | st.none())
def test_only_the_signed_chunk_passes(payload: bytes | None) -> None:
    problem = chunk_problem(CHUNK_SHA, len(CHUNK), payload, MAX_PACKET)
    assert (problem is None) == (payload == CHUNK)
    if payload is None:
        assert problem is not None and "not delivered" in problem


def test_mutated_chunks_are_refused() -> None:
    for case in mutations(seed=31, seeds=[CHUNK], count=3000):
        problem = chunk_problem(CHUNK_SHA, len(CHUNK), case, MAX_PACKET)
        assert (problem is None) == (case == CHUNK)
    assert MAX_CHUNK_TRIES >= 2  # a bad chunk is fetched again before the update fails


# -- the release reader over signed targets ---------------------------------------------------


class _Targets:
    """What ``read_release`` asks of a TUF session: signed target infos by path."""

    def __init__(self, infos: dict[str, TargetFile]) -> None:
        self.infos = infos

    def target(self, path: str) -> TargetFile | None:
        return self.infos.get(path)


def _info(path: str, length: int, sha: str, custom: Any) -> TargetFile:
    doc: dict[str, Any] = {"length": length, "hashes": {"sha256": sha}}
    if custom is not None:
        doc["custom"] = custom
    return TargetFile.from_dict(doc, path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
shas = st.sampled_from([CHUNK_SHA, "0" * 64, "zz", ""]) | st.text(max_size=70)


@settings(max_examples=300)
@given(
    files=st.lists(st.sampled_from(["manifest.json", "golden.npz", "model.onnx", "../x"])),
    record=st.dictionaries(st.sampled_from(["name", "version", "profile", "runtime"]), json_values),
    chunks=st.lists(st.lists(shas | st.integers() | st.booleans(), max_size=3), max_size=4)
    | json_values,
    length=st.integers(min_value=0, max_value=1 << 40),
)
def test_hostile_release_records_are_refused_with_our_errors(
    files: list[str], record: dict[str, Any], chunks: Any, length: int
) -> None:
    release = {"name": "digits", "version": 1, "profile": "p", "runtime": "onnx", "files": files}
    release.update(record)
    infos = {"digits/1/manifest.json": _info("m", 1, CHUNK_SHA, {"release": release})}
    for name in ("manifest.json", "golden.npz", "model.onnx"):
        path = f"digits/1/{name}"
        custom = {"chunks": chunks, **({"release": release} if name == "manifest.json" else {})}
        infos[path] = _info(path, length, CHUNK_SHA, custom)
    try:
        got = read_release(
            _Targets(infos),  # type: ignore[arg-type]
            "digits",
            1,
            profile="p",
            runtimes=("onnx",),
            limits=LIMITS,
        )
    except EdgeSdkError:
        return
    for spec in got.files:  # whatever passes is exactly what the limits allow
        assert spec.length <= LIMITS.max_artifact_bytes
        assert sum(n for _, n in spec.chunks) == spec.length
        assert all(type(n) is int and 0 < n <= LIMITS.max_chunk_bytes for _, n in spec.chunks)


# -- python-tuf's metadata reader, as the agent runs it ---------------------------------------


class _Broker:
    """Retained metadata by file name: the link ``MqttFetcher`` reads from."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def read_retained(self, topic: str, timeout: float) -> bytes | None:
        return self.files.get(topic.removeprefix(PREFIX + "/"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, signing_keys: Path) -> tuple[Path, dict]:
    keys = tmp_path_factory.mktemp("fuzz-keys")
    shutil.copytree(signing_keys, keys, dirs_exist_ok=True)
    repo = Repository.create(tmp_path_factory.mktemp("fuzz-repo"), keys)
    repo.add_bundle(make_bundle(keys, 1, artifact=matmul_model(8, 4)))
    files = repo.metadata_files()
    for role in ("snapshot", "targets"):  # what the client reads: the newest, under a fixed name
        newest = max((n for n in files if n.endswith(f".{role}.json")), key=lambda n: int(n[0]))
        files[f"{role}.json"] = files[newest]
    return keys / "root.json", files


def _served(files: dict[str, bytes], name: str, payload: bytes) -> dict[str, bytes]:
    """``files`` with ``name`` (timestamp, snapshot, targets, or the next root) replaced."""
    if name in ("snapshot.json", "targets.json"):
        newest = max((n for n in files if n.endswith("." + name)), key=lambda n: int(n[0]))
        return {**files, newest: payload}
    return {**files, name: payload}


def _read(root: Path, state: Path, files: dict[str, bytes]) -> None:
    shutil.rmtree(state, ignore_errors=True)
    session = TufSession(
        state,
        root,
        _Broker(files),  # type: ignore[arg-type]
        PREFIX,
        timeout=1.0,
        max_metadata_bytes=1 << 20,
    )
    session.refresh()
    read_release(session, "digits", 1, profile="x86-64", runtimes=("onnx",), limits=LIMITS)


def test_the_published_metadata_reads(fleet: tuple[Path, dict], tmp_path: Path) -> None:
    root, files = fleet
    _read(root, tmp_path / "tuf", files)


def test_mutated_metadata_gives_only_our_errors_never_a_retry(
    fleet: tuple[Path, dict], tmp_path: Path
) -> None:
    root, files = fleet
    # 1.digits-v1.json: the release's own delegated role, which holds its chunk lists.
    names = ["timestamp.json", "snapshot.json", "targets.json", "2.root.json", "1.digits-v1.json"]
    for i, name in enumerate(names):
        original = files.get(name, files["1.root.json"])
        for case in mutations(seed=41 + i, seeds=[original], count=400):
            try:
                _read(root, tmp_path / "tuf", _served(files, name, case))
            except TransferError as e:  # the broker delivered: nothing here is transient
                raise AssertionError(f"{name}: {e}") from e
            except EdgeSdkError:
                pass


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("timestamp.json", 70_000),  # over the 64 KiB cap (it has no signed length)
        ("snapshot.json", 1),  # one byte over the length the timestamp signs
        ("snapshot.json", 70_000),
        ("targets.json", 1),  # and the snapshot
        ("targets.json", 70_000),
    ],
)
def test_metadata_over_its_signed_length_or_cap_is_final(
    fleet: tuple[Path, dict], tmp_path: Path, name: str, extra: int
) -> None:
    root, files = fleet
    grown = files[name] + b" " * extra  # still valid JSON, longer than signed or capped
    with pytest.raises((OversizeError, TamperedError)) as caught:
        _read(root, tmp_path / "tuf", _served(files, name, grown))
    assert "signed" in str(caught.value) or "cap" in str(caught.value)


@settings(max_examples=60)
@given(st.sampled_from(["timestamp.json", "snapshot.json", "targets.json"]), json_values)
def test_any_json_in_place_of_metadata_is_refused_with_our_errors(
    fleet: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory, name: str, value: Any
) -> None:
    root, files = fleet
    try:
        payload = json.dumps(value).encode()
    except ValueError:
        return
    with pytest.raises(EdgeSdkError) as caught:
        _read(root, tmp_path_factory.mktemp("tuf"), _served(files, name, payload))
    assert not isinstance(caught.value, TransferError)


@pytest.mark.parametrize(("field", "value"), [("chunks", [[CHUNK_SHA, True]]), ("version", True)])
def test_json_true_is_not_a_number(field: str, value: Any) -> None:
    """``true`` passed as the integer 1 (a chunk length, a version) before."""
    release = {"name": "digits", "version": 1, "profile": "p", "runtime": "onnx"}
    release["files"] = ["manifest.json", "golden.npz"]
    chunks = [[CHUNK_SHA, 1]]
    if field == "chunks":
        chunks = value
    else:
        release[field] = value
    custom = {"chunks": chunks, "release": release}
    infos = {f"digits/1/{n}": _info(n, 1, CHUNK_SHA, custom) for n in release["files"]}
    with pytest.raises(TamperedError if field == "chunks" else EdgeSdkError):
        read_release(_Targets(infos), "digits", 1, profile="p", runtimes=("onnx",), limits=LIMITS)  # type: ignore[arg-type]


def _release_with_mirrors(mirrors: Any) -> dict[str, TargetFile]:
    release = {"name": "digits", "version": 1, "profile": "p", "runtime": "onnx"}
    release["files"] = ["manifest.json", "golden.npz"]
    custom = {"chunks": [[CHUNK_SHA, 1]], "release": release, "mirrors": mirrors}
    return {f"digits/1/{n}": _info(n, 1, CHUNK_SHA, custom) for n in release["files"]}


@settings(max_examples=300)
@given(mirrors=json_values | st.lists(st.text(max_size=80), max_size=12))
def test_any_signed_mirror_list_is_read_or_refused_as_tampered(mirrors: Any) -> None:
    """The mirror list in the manifest target's custom data: a list of at most 8 distinct
    http(s) base URLs, or the release is refused (TamperedError) before any download."""
    infos = _release_with_mirrors(mirrors)
    try:
        got = read_release(
            _Targets(infos), "digits", 1, profile="p", runtimes=("onnx",), limits=LIMITS
        )  # type: ignore[arg-type]
    except TamperedError:
        return
    assert len(got.mirrors) <= 8 and len(set(got.mirrors)) == len(got.mirrors)
    assert all(m.startswith(("http://", "https://")) and m.endswith("/") for m in got.mirrors)


def test_a_valid_mirror_list_is_kept_in_order_and_a_bad_one_refused() -> None:
    infos = _release_with_mirrors(["https://b.example/c", "http://127.0.0.1:8080/x/"])
    got = read_release(_Targets(infos), "digits", 1, profile="p", runtimes=("onnx",), limits=LIMITS)  # type: ignore[arg-type]
    assert got.mirrors == ("https://b.example/c/", "http://127.0.0.1:8080/x/")
    for bad in (["ftp://x/"], ["https://u:p@x/"], "https://x/", ["https://x/"] * 2, [1]):
        with pytest.raises(TamperedError, match="mirror"):
            read_release(
                _Targets(_release_with_mirrors(bad)),  # type: ignore[arg-type]
                "digits",
                1,
                profile="p",
                runtimes=("onnx",),
                limits=LIMITS,
            )


def _read_release(infos: dict[str, TargetFile], **options: Any) -> Any:
    """``read_release`` of digits v1 for profile "p" over these signed target infos."""
    options = {"runtimes": ("onnx",), "limits": LIMITS, **options}
    return read_release(_Targets(infos), "digits", 1, profile="p", **options)  # type: ignore[arg-type]


def _release_for(runtime: str) -> dict[str, TargetFile]:
    release = {"name": "digits", "version": 1, "profile": "p", "runtime": runtime}
    release["files"] = ["manifest.json", "golden.npz"]
    custom = {"chunks": [[CHUNK_SHA, 1]], "release": release}
    return {f"digits/1/{n}": _info(n, 1, CHUNK_SHA, custom) for n in release["files"]}


def test_a_release_for_the_profiles_second_runtime_is_taken_where_that_runtime_is_installed() -> (
    None
):
    """A Raspberry Pi profile builds TFLite and, as its second runtime, onnxruntime: a device
    with that profile takes an ONNX release when onnxruntime is installed, and refuses it before
    any download, naming what to install, when it is not; a runtime its profile does not name is
    refused either way."""
    onnx = _release_for("onnx")
    assert _read_release(onnx, runtimes=("tflite", "onnx")).runtime == "onnx"
    with pytest.raises(WrongTargetError, match=r"not installed on this device: pip install '"):
        _read_release(
            onnx, runtimes=("tflite", "onnx"), installed=lambda runtime: runtime == "tflite"
        )
    with pytest.raises(WrongTargetError, match="needs runtime 'onnx', this device runs 'tflite'"):
        _read_release(onnx, runtimes=("tflite",))
    with pytest.raises(WrongTargetError, match="needs runtime 1"):
        _read_release(_release_for(1), runtimes=("tflite", "onnx"))  # type: ignore[arg-type]

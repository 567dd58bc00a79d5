"""The state directory as hostile input: whatever a power cut, a full disk or a stranger's edit
leaves in it, the store answers with its own errors, and recovery never serves a version whose
files are not the ones verified at install.

Two parts: a seeded byte-level fuzz loop (``tests/fuzz.py``) over every small file the store
parses, and Hypothesis over whole state directories (files missing, cut short, flipped or
replaced; leftovers of cut removals; any journal and pointer) run through the updater's real
recovery with real bundles and the real runtime, beside a stand-in for the daemon.
"""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import load_config
from agent.update.machine import Journal, Resume, State
from agent.update.store import CHUNK_INDEX, VERIFIED_RECORD, ModelStore
from agent.update.updater import ModelUpdater
from edge_sdk.core.bundle import SIGNATURES
from edge_sdk.errors import EdgeSdkError, UpdateError
from edge_sdk.signing.keys import load_trust_root
from testing.agents import make_bundle
from tests.agent.update.stand_in import Device, bundle_files, device_config, install
from tests.fuzz import mutations

VERSIONS = (1, 2)
ORIGINALS: dict[int, dict[str, bytes]] = {}  # the installed files, by version (set by `template`)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, signing_keys: Path) -> dict[str, Any]:
    """A device state directory with v1 and v2 installed and verified, v2 committed."""
    base = tmp_path_factory.mktemp("store-fuzz")
    config = device_config(base / "dev", signing_keys)
    state = load_config(config).state_dir
    store = ModelStore(state, "digits")
    originals = ORIGINALS
    for version in VERSIONS:
        files = bundle_files(make_bundle(signing_keys, version))
        install(store, version, files)
        originals[version] = files
    store.set_current(2)
    journal = Journal("digits", State.COMMITTED, version=2, previous=1, serial=5, floor=2)
    store.save_journal(journal)
    return {"config": config, "state": state, "keys": signing_keys}


# -- byte-level fuzz loop over each file the store parses ---------------------------------------


def _store_calls(store: ModelStore) -> None:
    for call in (
        store.load_journal,
        store.current,
        store.installed,
        lambda: list(store.local_chunks()),
        lambda: [store.verified_record(v) for v in VERSIONS],
        lambda: [store.intact(v, {"manifest.json": b""}) for v in VERSIONS],
    ):
        try:
            call()
        except UpdateError as e:
            assert "\n" not in str(e)


@pytest.mark.parametrize(
    "target",
    ["journal.json", "current", f"versions/1/{CHUNK_INDEX}", f"versions/1/{VERIFIED_RECORD}"],
)
def test_fuzzed_store_files_give_only_our_errors(
    tmp_path: Path, template: dict[str, Any], target: str
) -> None:
    state = tmp_path / "state"
    shutil.copytree(template["state"], state)
    store = ModelStore(state, "digits")
    path = store.root / target
    seed = path.read_bytes()
    tracemalloc.start()
    try:
        for case in mutations(seed=hash(target) % 1000, seeds=[seed], count=500):
            path.write_bytes(case)
            _store_calls(store)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


# -- Hypothesis over whole state directories, through recovery ---------------------------------

FILES = ("manifest.json", "model.onnx", "golden.npz", SIGNATURES, CHUNK_INDEX, VERIFIED_RECORD)
DAMAGE = ("delete", "truncate", "flip", "garbage", "directory", "empty")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
maybe_version = st.sampled_from([None, 0, 1, 2, 3, -1])
journals = st.one_of(
    st.none(),
    st.builds(
        lambda state, version, previous, rollback_to, restarts, floor: Journal(
            "digits",
            state,
            version=version,
            previous=previous,
            rollback_to=rollback_to,
            restarts=restarts,
            floor=floor,
            serial=5,
        ).to_json(),
        st.sampled_from(list(State)),
        maybe_version,
        maybe_version,
        maybe_version,
        st.integers(0, 5),
        st.integers(0, 3),
    ),
    json_values,
    st.dictionaries(
        st.sampled_from(["model", "state", "version", "previous", "rollback_to", "history"]),
        json_values,
    ),
)
pointers = st.one_of(
    st.none(),
    st.builds(lambda v: {"version": v}, st.one_of(maybe_version, json_values)),
    json_values,
)
damages = st.lists(
    st.tuples(st.sampled_from(VERSIONS), st.sampled_from(FILES), st.sampled_from(DAMAGE)),
    max_size=4,
)
leftovers = st.lists(
    st.sampled_from([".removing-1-aa", ".replacing-2-bb", ".x.tmp", "7", "notes"]), max_size=3
)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _damage(path: Path, how: str, data: int) -> None:
    if how == "delete":
        _remove(path)
    elif how == "truncate" and path.is_file():
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif how == "flip" and path.is_file():
        raw = bytearray(path.read_bytes())
        if raw:
            raw[data % len(raw)] ^= 0x01
            path.write_bytes(bytes(raw))
    elif how == "garbage":
        _remove(path)
        path.write_bytes(bytes([data % 256]) * (data % 97))
    elif how == "directory":
        _remove(path)
        path.mkdir(exist_ok=True)
    elif how == "empty" and path.is_file():
        path.write_bytes(b"")


def _write_json(path: Path, value: Any) -> None:
    if value is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(json.dumps(value).encode())


@settings(max_examples=40)
@given(
    journal=journals,
    pointer=pointers,
    damage=damages,
    extra=leftovers,
    data=st.integers(0, 10**6),
)
def test_recovery_never_raises_foreign_errors_nor_serves_unverified_files(
    tmp_path_factory: pytest.TempPathFactory,
    template: dict[str, Any],
    journal: Any,
    pointer: Any,
    damage: list[tuple[int, str, str]],
    extra: list[str],
    data: int,
) -> None:
    base = tmp_path_factory.mktemp("case")
    state = base / "state"
    shutil.copytree(template["state"], state)
    store = ModelStore(state, "digits")
    originals = ORIGINALS
    for version, name, how in damage:
        _damage(store.version_dir(version) / name, how, data)
    for name in extra:
        leftover = store.versions / name
        if name.startswith(".replacing-2") and not leftover.exists():
            shutil.copytree(template["state"] / "models/digits/versions/2", leftover)
        elif name == ".x.tmp":
            leftover.write_bytes(b"half")
        else:
            leftover.mkdir(exist_ok=True)
    _write_json(store.journal_path, journal)
    _write_json(store.current_path, pointer)

    config = base / "agent.toml"
    config.write_text(template["config"].read_text().replace(str(template["state"]), str(state)))
    device = Device(config, load_trust_root(template["keys"] / "root.json"))
    model = device.config.models[0]
    try:
        updater = ModelUpdater(device, model, ModelStore(state, "digits"))  # type: ignore[arg-type]
        action = updater.recover()
        if action in (Resume.DOWNLOAD, Resume.VERIFY):
            updater.load_current()  # as the daemon does: the update resumes once online
        else:
            updater.resume(action)
    except EdgeSdkError as e:
        assert "\n" not in str(e).strip()
        return
    loaded = updater.slot.loaded
    if loaded is None:
        return
    version = loaded.version
    assert version in VERSIONS
    # What serves is exactly what was verified at install, on disk and in memory.
    directory = store.version_dir(version)
    for name, original in originals[version].items():
        assert (directory / name).read_bytes() == original, name
    assert loaded.bundle.manifest_bytes == originals[version]["manifest.json"]
    assert loaded.bundle.signatures == originals[version][SIGNATURES]

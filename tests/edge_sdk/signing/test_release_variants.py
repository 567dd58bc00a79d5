"""One release, many profiles: the repository keeps a variant per profile under one name and
version, a device reads its own profile's variant (python-tuf verifying the metadata as the agent
runs it), chunks two variants share are stored once, and a rollout plans a mixed group in one
go (waves across profiles, the rest skipped)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tuf.api.metadata import TargetFile

from agent.update.release import Limits, read_release
from agent.update.tuf_mqtt import TufSession
from edge_sdk.errors import EdgeSdkError, InputError, UpdateError, WrongTargetError
from edge_sdk.fleet.inventory import DeviceView, ModelView
from edge_sdk.fleet.rollout import Gate, Rollout, parse_waves, plan, summary
from edge_sdk.signing.release_targets import placement, variants
from edge_sdk.signing.repository import Repository
from testing.agents import make_bundle, padded_model, replace_manifest
from tests.fuzz import mutations

LIMITS = Limits(max_chunk_bytes=1 << 20, max_artifact_bytes=64 << 20)
PREFIX = "edge/default/repo/metadata"
X86, ARM = "x86-64", "arm64-generic"


class _Broker:
    """Retained metadata by file name, as ``MqttFetcher`` reads it from the broker."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def read_retained(self, topic: str, timeout: float) -> bytes | None:
        return self.files.get(topic.removeprefix(PREFIX + "/"))


def _session(repo: Repository, keyring: Path, state: Path) -> TufSession:
    shutil.rmtree(state, ignore_errors=True)
    session = TufSession(
        state,
        keyring / "root.json",
        _Broker(repo.metadata_files()),  # type: ignore[arg-type]
        PREFIX,
        timeout=1.0,
        max_metadata_bytes=1 << 20,
    )
    session.refresh()
    return session


@pytest.fixture()
def repo(tmp_path: Path, keyring: Path) -> Repository:
    return Repository.create(tmp_path / "repo", keyring)


def test_two_profiles_make_one_release_and_each_device_reads_its_own_variant(
    tmp_path: Path, repo: Repository, keyring: Path
) -> None:
    x86 = make_bundle(keyring, 3, profile=X86)
    arm = make_bundle(keyring, 3, profile=ARM, artifact=padded_model(4096, doc="arm"))
    repo.add_bundle(x86)
    repo.add_bundle(arm)
    assert repo.releases() == [("digits", 3)]
    records = repo.release_variants("digits", 3)
    assert sorted(records) == [ARM, X86]
    assert records[ARM]["profile"] == ARM and records[X86]["profile"] == X86
    # The first variant keeps the layout agents from before variants read.
    assert repo.release_record("digits", 3) == records[X86]

    session = _session(repo, keyring, tmp_path / "device")
    for profile, bundle in ((X86, x86), (ARM, arm)):
        release = read_release(
            session, "digits", 3, profile=profile, runtimes=("onnx",), limits=LIMITS
        )
        assert release.profile == profile
        specs = {f.name: f for f in release.files}
        assert specs["model.onnx"].length == len(bundle.artifact)
        assert specs["manifest.json"].length == len(bundle.manifest_bytes)
    with pytest.raises(WrongTargetError) as err:
        read_release(
            session, "digits", 3, profile="raspberry-pi-4", runtimes=("onnx",), limits=LIMITS
        )
    assert "publish a build for raspberry-pi-4" in str(err.value)
    with pytest.raises(UpdateError):
        read_release(session, "digits", 4, profile=X86, runtimes=("onnx",), limits=LIMITS)


def test_a_single_profile_release_stays_where_older_agents_read_it(
    repo: Repository, keyring: Path
) -> None:
    repo.add_bundle(make_bundle(keyring, 1, profile=X86))
    targets = set(_targets(repo))
    assert "digits/1/manifest.json" in targets and "digits/1/model.onnx" in targets
    assert not any(p.count("/") > 2 for p in targets)


def test_chunks_two_variants_share_are_stored_once(repo: Repository, keyring: Path) -> None:
    # The same fp32 artifact suits both profiles: only manifest, golden vectors and signatures
    # differ, so the second variant adds just their chunks.
    x86 = make_bundle(keyring, 2, profile=X86)
    arm = make_bundle(keyring, 2, profile=ARM)
    first = repo.add_bundle(x86)
    second = repo.add_bundle(arm)
    artifact_chunks = {sha for sha, _ in _chunks(repo, "digits/2/model.onnx")}
    assert artifact_chunks == {sha for sha, _ in _chunks(repo, f"digits/2/{ARM}/model.onnx")}
    assert artifact_chunks <= set(first.chunks) & set(second.chunks)
    everything = {sha for t in _targets(repo).values() for sha, _ in t.custom["chunks"]}
    new = set(second.chunks) - set(first.chunks)
    assert new and not new & artifact_chunks
    # Stored (and sent) once: the union is what the broker holds, no chunk twice.
    assert everything == set(first.chunks) | set(second.chunks)
    assert len(everything) < len(first.chunks) + len(second.chunks)


def test_each_variant_is_immutable_and_publishing_it_again_changes_nothing(
    repo: Repository, keyring: Path
) -> None:
    x86, arm = (make_bundle(keyring, 3, profile=p) for p in (X86, ARM))
    repo.add_bundle(x86)
    repo.add_bundle(arm)
    before = repo.metadata_files()
    assert repo.add_bundle(arm).metadata == before
    assert repo.add_bundle(x86).metadata == before
    changed = make_bundle(keyring, 3, profile=ARM, artifact=padded_model(1024))
    with pytest.raises(InputError) as err:
        repo.add_bundle(changed)
    assert "digits version 3" in str(err.value) and "for this profile" in str(err.value)
    assert repo.metadata_files() == before
    # Removing the release removes every variant, and only chunks no other release uses.
    removed = repo.remove_release("digits", 3)
    assert repo.releases() == [] and removed.removed_chunks


def test_a_profile_that_cannot_be_a_path_is_refused(repo: Repository, keyring: Path) -> None:
    for bad in ("../x86-64", "a/b", "", "x" * 65):
        forged = replace_manifest(make_bundle(keyring, 1, signed=False), profile=bad)
        with pytest.raises(InputError) as err:
            repo.add_bundle(forged)
        assert "profile" in str(err.value) and "\n" not in str(err.value)
    assert repo.releases() == []


def test_placement_and_variants_are_consistent(repo: Repository, keyring: Path) -> None:
    assert placement({}, "digits", 1, ARM) == "digits/1/"
    repo.add_bundle(make_bundle(keyring, 1, profile=ARM))
    targets = _targets(repo)
    assert variants(targets, "digits", 1) == {ARM: "digits/1/"}
    assert placement(targets, "digits", 1, ARM) == "digits/1/"
    assert placement(targets, "digits", 1, X86) == f"digits/1/{X86}/"
    assert variants(targets, "digits", 2) == {}


# -- what a device reads: hostile variant records ----------------------------------------------


def _targets(repo: Repository) -> dict[str, TargetFile]:
    return repo._state().all_targets()


def _chunks(repo: Repository, path: str) -> list[list[Any]]:
    return list(_targets(repo)[path].custom["chunks"])


class _Infos:
    def __init__(self, infos: dict[str, TargetFile]) -> None:
        self.infos = infos

    def target(self, path: str) -> TargetFile | None:
        return self.infos.get(path)


@pytest.fixture(scope="module")
def two_variant_targets(
    tmp_path_factory: pytest.TempPathFactory, signing_keys: Path
) -> dict[str, dict[str, Any]]:
    keys = tmp_path_factory.mktemp("variant-keys")
    shutil.copytree(signing_keys, keys, dirs_exist_ok=True)
    repo = Repository.create(tmp_path_factory.mktemp("variant-repo"), keys)
    repo.add_bundle(make_bundle(keys, 1, profile=X86))
    repo.add_bundle(make_bundle(keys, 1, profile=ARM))
    return {p: t.to_dict() for p, t in _targets(repo).items()}


def _read(docs: dict[str, dict[str, Any]], profile: str) -> None:
    infos = {p: TargetFile.from_dict(json.loads(json.dumps(d)), p) for p, d in docs.items()}
    read_release(
        _Infos(infos),  # type: ignore[arg-type]
        "digits",
        1,
        profile=profile,
        runtimes=("onnx",),
        limits=LIMITS,
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@settings(max_examples=300)
@given(
    path=st.sampled_from(["digits/1/manifest.json", f"digits/1/{ARM}/manifest.json"]),
    key=st.sampled_from(["name", "version", "profile", "runtime", "files", "bytes"]),
    value=json_values,
    profile=st.sampled_from([X86, ARM, "raspberry-pi-4"]),
)
def test_a_hostile_variant_record_is_one_of_our_errors(
    two_variant_targets: dict[str, dict[str, Any]],
    path: str,
    key: str,
    value: Any,
    profile: str,
) -> None:
    docs = json.loads(json.dumps(two_variant_targets))
    docs[path]["custom"]["release"][key] = value
    try:
        _read(docs, profile)
    except EdgeSdkError:
        return


def test_mutated_variant_manifests_are_refused_or_read_never_a_crash(
    two_variant_targets: dict[str, dict[str, Any]],
) -> None:
    path = f"digits/1/{ARM}/manifest.json"
    seed = json.dumps(two_variant_targets[path]).encode()
    outcomes = {"read": 0, "refused": 0}
    for case in mutations(seed=1505, seeds=[seed], count=2000):
        try:
            doc = json.loads(case)
            info = TargetFile.from_dict(doc, path).to_dict()
        except Exception:  # python-tuf refuses it before the agent sees it
            continue
        docs = {**two_variant_targets, path: info}
        try:
            _read(docs, ARM)
        except EdgeSdkError:
            outcomes["refused"] += 1
        else:
            outcomes["read"] += 1
    assert outcomes["read"] and outcomes["refused"]


# -- a rollout over a mixed group --------------------------------------------------------------


def _view(name: str, profile: str, *, group: str = "lobby", online: bool = True) -> DeviceView:
    model = ModelView("digits", 1, "committed")
    return DeviceView(
        name, online, group, profile, at="2026-11-30T00:00:00Z", models={"digits": model}
    )


def test_a_mixed_group_rolls_out_in_waves_across_profiles() -> None:
    views = {f"x{i}": _view(f"x{i}", X86) for i in range(10)}
    views |= {f"a{i}": _view(f"a{i}", ARM) for i in range(4)}
    views["pi"] = _view("pi", "raspberry-pi-4")
    views["elsewhere"] = _view("elsewhere", X86, group="yard")
    r = plan(
        "digits",
        2,
        "2",
        [X86, ARM],
        views,
        steps=parse_waves("1,10%,50%,100%"),
        gate=Gate(),
        group="lobby",
    )
    by_profile = {d: views[d].profile for d in r.devices}
    # The canary wave tries every variant; every later wave keeps each profile's share.
    assert sorted(by_profile[d] for d in r.waves[0]) == [ARM, X86]
    assert [len(w) for w in r.waves] == [2, 5, 7]  # 10% of either is no new device
    assert sorted(r.devices) == sorted(d for d in views if d not in ("pi", "elsewhere"))
    assert r.skipped == {"pi": f"profile raspberry-pi-4: the release has variants for {ARM}, {X86}"}
    assert r.profiles == (ARM, X86) and r.groups == ("lobby",)
    out = summary(r)
    assert out["profiles"] == [ARM, X86] and "pi" in out["skipped"]

    again = Rollout.from_json(json.loads(json.dumps(r.to_json())))
    assert again == r
    with pytest.raises(InputError) as err:
        plan("digits", 2, "2", ["jetson-orin"], views, steps=("100%",), gate=Gate())
    assert "jetson-orin" in str(err.value)


def test_a_record_from_before_variants_is_still_read() -> None:
    r = plan("digits", 2, "2", X86, {"a": _view("a", X86)}, steps=("100%",), gate=Gate())
    doc = r.to_json()
    doc["profile"] = doc.pop("profiles")[0]
    assert Rollout.from_json(doc) == r

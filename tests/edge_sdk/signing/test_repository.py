"""The fleet's TUF repository, checked with python-tuf's own client (ngclient) as devices run it."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.exceptions import (
    BadVersionNumberError,
    DownloadHTTPError,
    ExpiredMetadataError,
    RepositoryError,
)
from tuf.api.metadata import Metadata, TargetFile  # type: ignore[attr-defined]
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from edge_sdk.core.bundle import Bundle, GoldenInfo, Manifest, sha256
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.core.trust import sign_files
from edge_sdk.errors import EdgeSdkError, InputError, KeyFileError, OutputError, TamperedError
from edge_sdk.signing.keys import load_public_key, load_signer, rotate_online_key
from edge_sdk.signing.repository import PublishSet, Repository
from edge_sdk.signing.repository_layout import KEEP_VERSIONS

DIGITS_MODEL = Path(__file__).resolve().parents[3] / "examples" / "digits" / "model.onnx"
METADATA_URL = "repo:/metadata/"


@functools.cache
def digits_artifact() -> bytes:
    return DIGITS_MODEL.read_bytes()


def make_bundle(
    keyring: Path, version: int, artifact: bytes | None = None, *, golden: bytes = b"golden"
) -> Bundle:
    """A signed digits bundle around real model bytes (no build: a build takes seconds)."""
    artifact = digits_artifact() if artifact is None else artifact
    manifest = Manifest(
        name="digits",
        version=version,
        label=str(version),
        profile="x86-64-vnni",
        runtime="onnx",
        precision="int8",
        artifact="model.onnx",
        artifact_sha256=sha256(artifact),
        artifact_bytes=len(artifact),
        inputs=(TensorSpec("input", ("batch", 1, 8, 8), "float32", "NCHW"),),
        outputs=(TensorSpec("logits", ("batch", 10), "float32", "NC"),),
        golden=GoldenInfo(4, 1e-3, 0.0),
        created="2026-01-01T00:00:00+00:00",
    )
    bundle = Bundle(manifest, artifact, golden, None, manifest.to_bytes())
    signatures = sign_files(
        bundle.signed_files(),
        [load_signer(keyring / "online-1.key")],
        expires=datetime.now(UTC) + timedelta(days=30),
        custom=manifest.identity(),
    )
    return bundle.with_signatures(signatures)


class BrokerFetcher(FetcherInterface):
    """Serves metadata files by name, as the broker's retained messages do; a missing one is a
    404, which is what ends ngclient's walk over N.root.json."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = dict(files)

    def _fetch(self, url: str) -> Iterator[bytes]:
        name = url.removeprefix(METADATA_URL)
        if not url.startswith(METADATA_URL) or name not in self.files:
            raise DownloadHTTPError(f"{url} not found", 404)
        return iter([self.files[name]])


def device(directory: Path, pinned_root: bytes, files: Mapping[str, bytes]) -> Updater:
    """A device's ngclient; ``directory`` keeps its trusted metadata between updaters, as the
    agent's does between reconciles."""
    if not directory.exists():
        directory.mkdir()
        (directory / "root.json").write_bytes(pinned_root)
    return Updater(
        metadata_dir=str(directory),
        metadata_base_url=METADATA_URL,
        target_base_url="repo:/targets/",
        fetcher=BrokerFetcher(files),
        bootstrap=None,  # the root.json pinned in directory
    )


def one_line(err: pytest.ExceptionInfo[EdgeSdkError]) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


def reassemble(info: TargetFile, chunks: Mapping[str, bytes]) -> bytes:
    parts = []
    for digest, length in info.custom["chunks"]:
        part = chunks[digest]
        assert len(part) == length and hashlib.sha256(part).hexdigest() == digest
        parts.append(part)
    data = b"".join(parts)
    info.verify_length_and_hashes(data)
    return data


@pytest.fixture()
def pinned(keyring: Path) -> bytes:
    return (keyring / "root.json").read_bytes()


@pytest.fixture()
def repo(tmp_path: Path, keyring: Path) -> Repository:
    return Repository.create(tmp_path / "repo", keyring)


def test_device_verifies_a_release_and_reassembles_its_chunks(
    tmp_path: Path, repo: Repository, keyring: Path, pinned: bytes
) -> None:
    bundle = make_bundle(keyring, 3)
    published = repo.add_bundle(bundle)
    assert published.metadata == repo.metadata_files()
    # Publish order: no device may see a timestamp before the snapshot and targets it names;
    # the release's files are signed in its own delegated role (release_roles.py).
    assert list(published.metadata) == [
        "1.root.json",
        "1.digits-v3.json",
        "1.targets.json",
        "2.targets.json",
        "1.snapshot.json",
        "2.snapshot.json",
        "timestamp.json",
    ]

    updater = device(tmp_path / "device", pinned, published.metadata)
    updater.refresh()
    manifest = updater.get_targetinfo("digits/3/manifest.json")
    assert manifest is not None
    files = ["golden.npz", "manifest.json", "model.onnx", "targets.json"]
    assert manifest.custom["release"] == {
        "name": "digits",
        "version": 3,
        "profile": "x86-64-vnni",
        "runtime": "onnx",
        "files": files,
        "bytes": sum(len(data) for data in (bundle.manifest_bytes, bundle.artifact, b"golden"))
        + len(bundle.signatures or b""),
    }
    expected = {**bundle.signed_files(), "targets.json": bundle.signatures}
    for name in files:
        info = updater.get_targetinfo(f"digits/3/{name}")
        assert info is not None
        assert reassemble(info, published.chunks) == expected[name]
        assert "release" not in info.custom or name == "manifest.json"
    assert len(published.chunks) > 10  # the 4.6 MB model really is cut into chunks
    assert published.chunks == repo.chunks_of(bundle)
    assert repo.releases() == [("digits", 3)]


def test_create_refuses_a_non_empty_directory(tmp_path: Path, keyring: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError) as err:
        Repository.create(tmp_path / "busy", keyring)
    assert "busy" in one_line(err)
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]


def test_open_names_what_is_wrong(
    tmp_path: Path, repo: Repository, keyring: Path, signing_keys_t2: Path
) -> None:
    assert Repository.open(repo.directory, keyring).releases() == []
    with pytest.raises(InputError) as err:
        Repository.open(tmp_path, keyring)
    assert "not an edge-sdk repository" in one_line(err)
    with pytest.raises(KeyFileError) as wrong:
        Repository.open(repo.directory, signing_keys_t2)
    assert "not this repository's keyring" in one_line(wrong)


def test_adding_the_same_release_again_changes_nothing(repo: Repository, keyring: Path) -> None:
    bundle = make_bundle(keyring, 3)
    first = repo.add_bundle(bundle)
    again = repo.add_bundle(bundle)
    assert again.metadata == first.metadata == repo.metadata_files()
    assert again.chunks == first.chunks  # still returned, to re-publish a broker that lost them


def test_same_version_with_other_bytes_is_refused(repo: Repository, keyring: Path) -> None:
    repo.add_bundle(make_bundle(keyring, 3))
    before = repo.metadata_files()
    with pytest.raises(InputError) as err:
        repo.add_bundle(make_bundle(keyring, 3, golden=b"other golden"))
    message = one_line(err)
    assert "digits version 3" in message and "bump the version" in message
    assert repo.metadata_files() == before


def test_a_tampered_artifact_is_not_published(repo: Repository, keyring: Path) -> None:
    bundle = make_bundle(keyring, 3)
    forged = Bundle(
        bundle.manifest, b"evil" + bundle.artifact, b"golden", None, bundle.manifest_bytes
    )
    with pytest.raises(TamperedError):
        repo.add_bundle(forged)
    assert repo.releases() == []


def test_a_slightly_changed_model_shares_most_chunks(
    tmp_path: Path, repo: Repository, keyring: Path, pinned: bytes
) -> None:
    first = repo.add_bundle(make_bundle(keyring, 3))
    changed = bytearray(digits_artifact())
    middle = len(changed) // 2
    changed[middle : middle + 64] = bytes(64)  # a retrained layer's few weights, say
    changed[1000:1000] = b"inserted bytes shift everything after them"
    second = repo.add_bundle(make_bundle(keyring, 4, bytes(changed)))

    updater = device(tmp_path / "device", pinned, second.metadata)
    old, new = (updater.get_targetinfo(f"digits/{v}/model.onnx") for v in (3, 4))
    assert old is not None and new is not None
    old_ids = {digest for digest, _ in old.custom["chunks"]}
    new_ids = [digest for digest, _ in new.custom["chunks"]]
    fresh = [d for d in new_ids if d not in old_ids]
    assert len(fresh) <= 4 < len(new_ids) * 0.8, (len(fresh), len(new_ids))
    assert reassemble(new, second.chunks) == bytes(changed)
    assert all(first.chunks.get(d) == second.chunks[d] for d in new_ids if d in old_ids)
    assert repo.releases() == [("digits", 3), ("digits", 4)]


def test_threshold_two_keyring_signs_with_two_keys(tmp_path: Path, signing_keys_t2: Path) -> None:
    keyring = Path(shutil.copytree(signing_keys_t2, tmp_path / "keys"))
    repo = Repository.create(tmp_path / "repo", keyring)
    published = repo.add_bundle(make_bundle(keyring, 1, b"\x08\x01tiny model" * 100))
    timestamp = Metadata.from_bytes(published.metadata["timestamp.json"])
    assert len(timestamp.signatures) == 2
    updater = device(tmp_path / "device", (keyring / "root.json").read_bytes(), published.metadata)
    assert updater.get_targetinfo("digits/1/model.onnx") is not None


def test_device_pinned_to_the_old_root_follows_a_key_rotation(
    tmp_path: Path, repo: Repository, keyring: Path, pinned: bytes
) -> None:
    before = repo.add_bundle(make_bundle(keyring, 3))
    device(tmp_path / "seen-v1", pinned, before.metadata).refresh()

    revoked = load_public_key(keyring / "online-1.pub").keyid
    rotate_online_key(keyring, revoke=keyring / "online-1.pub")
    after = repo.refresh()
    assert "2.root.json" in after.metadata

    for state in ("seen-v1", "fresh"):  # a device that refreshed before, and a new one
        updater = device(tmp_path / state, pinned, after.metadata)
        updater.refresh()
        assert (tmp_path / state / "root_history" / "2.root.json").exists()
        info = updater.get_targetinfo("digits/3/model.onnx")
        assert info is not None and info.length == len(digits_artifact())
    for name in ("timestamp.json", max(n for n in after.metadata if n.endswith(".targets.json"))):
        assert revoked not in Metadata.from_bytes(after.metadata[name]).signatures


def test_expired_timestamp_is_refused_until_refreshed(
    tmp_path: Path, repo: Repository, pinned: bytes
) -> None:
    stale = repo.refresh(expires=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(ExpiredMetadataError):
        device(tmp_path / "a", pinned, stale.metadata).refresh()
    renewed = repo.refresh()
    device(tmp_path / "b", pinned, renewed.metadata).refresh()


def test_replayed_timestamp_or_snapshot_is_rejected(
    tmp_path: Path, repo: Repository, keyring: Path, pinned: bytes
) -> None:
    old = repo.metadata_files()
    current = repo.add_bundle(make_bundle(keyring, 3)).metadata
    device(tmp_path / "device", pinned, current).refresh()

    # The broker (or someone on it) serves the whole earlier repository again.
    with pytest.raises(BadVersionNumberError):
        device(tmp_path / "device", pinned, old).refresh()

    # A new timestamp, but the snapshot it names swapped for an older one.
    newer = repo.add_bundle(make_bundle(keyring, 4, b"\x08\x01tiny model" * 100)).metadata
    name = max(
        (n for n in newer if n.endswith(".snapshot.json")), key=lambda n: int(n.split(".")[0])
    )
    swapped = {**newer, name: current[min(n for n in current if n.endswith(".snapshot.json"))]}
    with pytest.raises(RepositoryError):
        device(tmp_path / "device", pinned, swapped).refresh()
    device(tmp_path / "device", pinned, newer).refresh()  # the real one still goes through


def test_old_versions_are_pruned_and_reported(
    tmp_path: Path, repo: Repository, keyring: Path, pinned: bytes
) -> None:
    removed: list[str] = []
    for version in range(1, 6):
        published = repo.add_bundle(make_bundle(keyring, version, b"\x08\x01m" * 50 * version))
        removed += published.removed_metadata
    names = set(repo.metadata_files())
    snapshots = sorted(int(n.split(".")[0]) for n in names if n.endswith(".snapshot.json"))
    assert snapshots == list(range(7 - KEEP_VERSIONS, 7))  # v1 at create, one per release
    assert "1.snapshot.json" in removed and "1.targets.json" in removed
    assert not names & set(removed)
    updater = device(tmp_path / "device", pinned, repo.metadata_files())
    assert updater.get_targetinfo("digits/1/manifest.json") is not None


def test_remove_release_drops_its_targets_and_only_its_own_chunks(
    tmp_path: Path, repo: Repository, keyring: Path, pinned: bytes
) -> None:
    v3 = repo.add_bundle(make_bundle(keyring, 3))
    changed = digits_artifact()[:-100] + bytes(100)
    v4 = repo.add_bundle(make_bundle(keyring, 4, changed))
    result = repo.remove_release("digits", 3)
    assert repo.releases() == [("digits", 4)]
    assert result.removed_chunks and set(result.removed_chunks) <= set(v3.chunks)
    assert not set(result.removed_chunks) & set(v4.chunks)
    updater = device(tmp_path / "device", pinned, result.metadata)
    assert updater.get_targetinfo("digits/3/manifest.json") is None
    assert updater.get_targetinfo("digits/4/manifest.json") is not None
    with pytest.raises(InputError) as err:
        repo.remove_release("digits", 3)
    assert "not published" in one_line(err)


def test_failed_signing_leaves_the_repository_unchanged(
    tmp_path: Path, repo: Repository, keyring: Path
) -> None:
    before = repo.metadata_files()
    bundle = make_bundle(keyring, 3)
    for key in keyring.glob("online-*.key"):
        key.rename(tmp_path / key.name)  # the online keys are not on this machine
    with pytest.raises(KeyFileError) as err:
        repo.add_bundle(bundle)
    assert "online-N.key" in one_line(err)
    assert repo.metadata_files() == before
    assert sorted(p.name for p in repo.metadata_dir.iterdir()) == sorted(before)


def test_refresh_renews_only_the_timestamp_while_the_rest_is_fresh(repo: Repository) -> None:
    before = repo.metadata_files()
    after = repo.refresh()
    changed = {n for n in after.metadata if before.get(n) != after.metadata[n]}
    assert changed == {"timestamp.json"}
    signed = json.loads(after.metadata["timestamp.json"])["signed"]
    assert signed["version"] == 2 and signed["meta"]["snapshot.json"]["version"] == 1


def test_publish_set_is_what_the_directory_holds(repo: Repository, keyring: Path) -> None:
    published = repo.add_bundle(make_bundle(keyring, 3))
    assert isinstance(published, PublishSet)
    on_disk = {p.name: p.read_bytes() for p in repo.metadata_dir.iterdir()}
    assert published.metadata == on_disk

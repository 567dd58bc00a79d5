"""One delegated targets role per release (edge_sdk/signing/release_roles.py): a device's update
fetches its own release's chunk lists, not every release's, checked with python-tuf's ngclient
as devices run it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from tuf.ngclient.updater import Updater

from edge_sdk.signing.repository import Repository
from edge_sdk.signing.repository_layout import load_state
from tests.edge_sdk.signing.test_repository import METADATA_URL, BrokerFetcher, make_bundle


class CountingFetcher(BrokerFetcher):
    """The broker's retained metadata, noting each file a device fetched."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        super().__init__(files)
        self.fetched: dict[str, int] = {}

    def _fetch(self, url: str) -> Iterator[bytes]:
        chunks = super()._fetch(url)
        name = url.removeprefix(METADATA_URL)
        self.fetched[name] = len(self.files[name])
        return chunks


def update_to(directory: Path, pinned: bytes, files: Mapping[str, bytes], version: int) -> dict:
    """What a device's update to digits ``version`` fetches: refresh, then its release's
    files, as agent.update.release.read_release looks them up."""
    if not directory.exists():
        directory.mkdir()
        (directory / "root.json").write_bytes(pinned)
    fetcher = CountingFetcher(files)
    updater = Updater(
        metadata_dir=str(directory),
        metadata_base_url=METADATA_URL,
        target_base_url="repo:/targets/",
        fetcher=fetcher,
        bootstrap=None,  # the root.json pinned in directory
    )
    updater.refresh()
    for name in ("manifest.json", "model.onnx", "golden.npz", "targets.json"):
        assert updater.get_targetinfo(f"digits/{version}/{name}") is not None
    return fetcher.fetched


def test_an_update_fetches_its_own_release_chunk_lists_not_every_release(
    tmp_path: Path, keyring: Path
) -> None:
    repo = Repository.create(tmp_path / "repo", keyring)
    pinned = (keyring / "root.json").read_bytes()
    first = update_to(
        tmp_path / "dev", pinned, repo.add_bundle(make_bundle(keyring, 1)).metadata, 1
    )
    assert "1.digits-v1.json" in first
    for version in range(2, 7):
        files = repo.add_bundle(make_bundle(keyring, version)).metadata
    # A device that installed v1 updates to v6; a new device installs v6 directly.
    later = update_to(tmp_path / "dev", pinned, files, 6)
    fresh = update_to(tmp_path / "new", pinned, files, 6)
    # Five more releases cost the update a delegation and a snapshot line each (a few hundred
    # bytes), not their chunk lists (about 6 KB each for this 4.6 MB model).
    assert sum(later.values()) < sum(first.values()) + 5 * 600, (first, later)
    for fetched in (later, fresh):
        roles = [n for n in fetched if "digits-v" in n]
        assert roles == ["1.digits-v6.json"], fetched
    role_bytes = len(files["1.digits-v6.json"])
    assert role_bytes > 5000  # the chunk lists are there, in the release's own role


def test_a_removed_release_published_again_reads_on_a_device_that_saw_it(
    tmp_path: Path, keyring: Path
) -> None:
    repo = Repository.create(tmp_path / "repo", keyring)
    pinned = (keyring / "root.json").read_bytes()
    repo.add_bundle(make_bundle(keyring, 1))
    update_to(tmp_path / "dev", pinned, repo.add_bundle(make_bundle(keyring, 2)).metadata, 2)
    removed = repo.remove_release("digits", 2)
    assert not any("digits-v2" in n for n in removed.metadata)  # no longer delegated
    # ngclient refuses a snapshot that drops a file it listed before, or lowers its version:
    # the device must still refresh after the removal and after the release is back.
    updater = Updater(
        metadata_dir=str(tmp_path / "dev"),
        metadata_base_url=METADATA_URL,
        target_base_url="repo:/targets/",
        fetcher=BrokerFetcher(removed.metadata),
        bootstrap=None,
    )
    updater.refresh()
    assert updater.get_targetinfo("digits/2/manifest.json") is None
    assert updater.get_targetinfo("digits/1/manifest.json") is not None
    again = repo.add_bundle(make_bundle(keyring, 2)).metadata
    assert "2.digits-v2.json" in again
    update_to(tmp_path / "dev", pinned, again, 2)
    assert repo.releases() == [("digits", 1), ("digits", 2)]


def _old_layout(repo: Repository, keyring: Path, versions: range) -> dict[str, bytes]:
    """The repository as edge-sdk wrote it before release roles: every release's targets in
    the top-level targets metadata, no delegations, a snapshot listing targets.json alone.
    The targets are the current code's (the same files and chunk lists either way)."""
    from tuf.api.metadata import Metadata, Snapshot, Targets, Timestamp

    from edge_sdk.signing.metadata_plan import meta_file, signing
    from edge_sdk.signing.repository_layout import write_files
    from edge_sdk.signing.repository_signers import online_signers, walk_roots

    scratch = Repository.create(repo.directory.parent / f"{repo.directory.name}-scratch", keyring)
    for version in versions:
        scratch.add_bundle(make_bundle(keyring, version))
    every = load_state(scratch.metadata_dir).all_targets()
    trust, _ = walk_roots(keyring, ())
    sign = signing(trust.root, online_signers(keyring, trust.root))
    state = load_state(repo.metadata_dir)
    far = state.targets.signed.expires
    top = sign(Metadata(Targets(state.targets.signed.version + 1, expires=far, targets=every)))
    top_meta = meta_file(state.targets.signed.version + 1, top)
    snapshot_version = state.snapshot.signed.version + 1
    snap = sign(Metadata(Snapshot(snapshot_version, expires=far, meta={"targets.json": top_meta})))
    stamp = Timestamp(
        state.timestamp.signed.version + 1,
        expires=far,
        snapshot_meta=meta_file(snapshot_version, snap),
    )
    files = {
        f"{top_meta.version}.targets.json": top,
        f"{snapshot_version}.snapshot.json": snap,
        "timestamp.json": sign(Metadata(stamp)),
    }
    write_files(repo.metadata_dir, files)
    return repo.metadata_files()


def test_a_repository_from_before_release_roles_moves_them_into_roles_at_its_next_change(
    tmp_path: Path, keyring: Path
) -> None:
    """A fleet repository written before release roles (every target at the top level) keeps
    serving its devices: the next publish moves every release into its own role, and a device
    that trusted the old layout, and a new one, both read old and new releases."""
    repo = Repository.create(tmp_path / "repo", keyring)
    pinned = (keyring / "root.json").read_bytes()
    old = _old_layout(repo, keyring, range(1, 3))
    assert not any("digits-v" in name for name in old)  # no roles yet: the old layout
    fetched = update_to(tmp_path / "dev", pinned, old, 2)  # a device on the old layout
    assert not any("digits-v" in name for name in fetched)
    assert repo.releases() == [("digits", 1), ("digits", 2)]

    files = repo.add_bundle(make_bundle(keyring, 3)).metadata
    assert {"1.digits-v1.json", "1.digits-v2.json", "1.digits-v3.json"} <= set(files)
    state = load_state(repo.metadata_dir)
    assert state.targets.signed.targets == {}  # moved out of the top level, none left behind
    assert sorted(state.delegated) == ["digits-v1", "digits-v2", "digits-v3"]
    assert repo.releases() == [("digits", 1), ("digits", 2), ("digits", 3)]
    for device in ("dev", "new"):
        for version in (1, 2, 3):
            fetched = update_to(tmp_path / device, pinned, files, version)
            assert f"1.digits-v{version}.json" in fetched, (device, version, fetched)

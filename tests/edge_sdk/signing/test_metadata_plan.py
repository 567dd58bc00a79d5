"""The repository's pure decision core, fed a real repository's state and keyring: what a change
re-signs when nothing changed, when only the clock moved, and after a new root. What devices
make of the result is in test_repository.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]

from edge_sdk.signing.metadata_plan import LIFETIMES, TIMESTAMP, plan, signing
from edge_sdk.signing.repository import Repository
from edge_sdk.signing.repository_layout import load_state
from edge_sdk.signing.repository_signers import online_signers, walk_roots


@pytest.fixture()
def repo(tmp_path: Path, keyring: Path) -> Repository:
    return Repository.create(tmp_path / "repo", keyring)


def decide(
    repo: Repository,
    now: datetime,
    *,
    targets: dict[str, TargetFile] | None = None,
    resign_all: bool = False,
    force_timestamp: bool = False,
) -> dict[str, bytes]:
    """The files ``plan`` would write, named in write order, signed with the keyring's keys."""
    state = load_state(repo.metadata_dir)
    trust, new_roots = walk_roots(repo.keyring, state.roots)
    assert not new_roots
    sign = signing(trust.root, online_signers(repo.keyring, trust.root))
    return plan(
        state,
        trust.root,
        sign,
        now=now,
        targets=targets,
        resign_all=resign_all,
        force_timestamp=force_timestamp,
    )


def test_a_fresh_repository_re_signs_nothing_unless_a_timestamp_is_asked_for(
    repo: Repository,
) -> None:
    now = datetime.now(UTC)
    assert decide(repo, now) == {}
    assert list(decide(repo, now, force_timestamp=True)) == [TIMESTAMP]


def test_past_half_a_lifetime_a_role_is_renewed_with_what_lists_it(repo: Repository) -> None:
    later = datetime.now(UTC) + LIFETIMES["snapshot"] / 2 + timedelta(hours=1)
    assert sorted(decide(repo, later)) == ["2.snapshot.json", TIMESTAMP]


def test_unchanged_targets_sign_nothing_and_a_new_root_re_signs_every_role(
    repo: Repository,
) -> None:
    targets = load_state(repo.metadata_dir).all_targets()
    assert decide(repo, datetime.now(UTC), targets=targets) == {}
    everything = decide(repo, datetime.now(UTC), resign_all=True)
    assert sorted(everything) == ["2.snapshot.json", "2.targets.json", TIMESTAMP]

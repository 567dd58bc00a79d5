"""The repository's decision core: which metadata a change re-signs, with what versions and
expiries, signed in memory.

Pure functions of the loaded :class:`RepositoryState`, the root, the signers and the clock, in
the style of python-tuf's ``TrustedMetadataSet``: no file is read or written here
(:mod:`edge_sdk.signing.repository_layout` loads the state and writes the result). Everything is
signed before the first write, so a failed signing leaves the directory unchanged.

A repository from before release delegations (:mod:`edge_sdk.signing.release_roles`) holds its
targets at the top level; :func:`plan` moves them into one role per release on the next change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# The ignores: python-tuf and securesystemslib re-export these names without __all__, which
# mypy --strict (no implicit re-export) flags; the names and their types still resolve.
from securesystemslib.signer import Signer  # type: ignore[attr-defined]
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (  # type: ignore[attr-defined]
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from edge_sdk.core.bundle import sha256
from edge_sdk.errors import ThresholdError
from edge_sdk.signing import release_roles
from edge_sdk.signing.release_targets import HASH

# Devices treat an expired timestamp as "the repository is gone or frozen": a broker that keeps
# serving stale retained messages (or an attacker replaying them) can hide new releases and key
# revocations for at most a day. Snapshot and targets change only when the operator publishes;
# their longer lives mean the routine (daily or more often) refresh re-signs only the timestamp.
LIFETIMES = {
    Timestamp.type: timedelta(days=1),
    Snapshot.type: timedelta(days=7),
    Targets.type: timedelta(days=30),
}
TARGETS_META = "targets.json"  # the key of targets metadata in snapshot.meta, per the spec
TIMESTAMP = "timestamp.json"
# Compact JSON: every device fetches these over MQTT; signatures cover canonical JSON anyway.
_JSON = JSONSerializer(compact=True)
Sign = Callable[[Metadata[Any]], bytes]


@dataclass(frozen=True)
class RepositoryState:
    """The repository as loaded; the Metadata objects are python-tuf's, treat as read-only."""

    roots: tuple[bytes, ...]  # roots[i] is (i + 1).root.json
    timestamp: Metadata[Timestamp]
    snapshot: Metadata[Snapshot]
    targets: Metadata[Targets]
    delegated: dict[str, Metadata[Targets]] = field(default_factory=dict)  # role -> its metadata

    def all_targets(self) -> dict[str, TargetFile]:
        return release_roles.flatten(
            self.targets.signed, {r: md.signed for r, md in self.delegated.items()}
        )


def meta_file(version: int, data: bytes) -> MetaFile:
    # Length and hash, not just version: the client then caps the download at the exact length
    # and a swapped file fails before it is even parsed.
    return MetaFile(version=version, length=len(data), hashes={HASH: sha256(data)})


def _stale(md: Metadata[Any], root: Root, now: datetime) -> bool:
    """Re-sign when the root's current keys no longer meet the role's threshold (a rotation
    revoked a signer) or when less than half the role's lifetime is left: a refresh run at
    least daily then always renews in time, and never churns files that are still fresh."""
    role = md.signed.type
    if not root.get_verification_result(role, md.signed_bytes, md.signatures).verified:
        return True
    remaining: timedelta = md.signed.expires - now
    return remaining < LIFETIMES[role] / 2


def genesis(sign: Sign, now: datetime, expires: datetime | None) -> dict[str, bytes]:
    """Version 1 of targets (empty), snapshot and timestamp, in write order."""
    at = {role: expires or now + life for role, life in LIFETIMES.items()}
    targets = sign(Metadata(Targets(version=1, expires=at[Targets.type])))
    snapshot = sign(
        Metadata(Snapshot(1, expires=at[Snapshot.type], meta={TARGETS_META: meta_file(1, targets)}))
    )
    timestamp = sign(
        Metadata(Timestamp(1, expires=at[Timestamp.type], snapshot_meta=meta_file(1, snapshot)))
    )
    return {"1.targets.json": targets, "1.snapshot.json": snapshot, TIMESTAMP: timestamp}


def plan(
    state: RepositoryState,
    root: Root,
    sign: Sign,
    *,
    now: datetime,
    expires: datetime | None = None,
    targets: dict[str, TargetFile] | None = None,
    resign_all: bool = False,
    force_timestamp: bool = False,
) -> dict[str, bytes]:
    """The metadata files a change writes (name -> bytes, in write order); empty if none.

    A role gets a new version when its content changes (``targets``), when the role it lists
    got one (targets -> snapshot -> timestamp), on ``resign_all`` (a new root: sign with its
    keys) or when :func:`_stale`. ``expires`` overrides every new expiry (tests make expired
    metadata with a past one).
    """
    at = {role: expires or now + life for role, life in LIFETIMES.items()}
    files: dict[str, bytes] = {}
    wanted = release_roles.split(state.all_targets() if targets is None else targets)
    old_meta = state.snapshot.signed.meta
    meta: dict[str, MetaFile] = {}
    for role, role_targets in sorted(wanted.items()):
        old = state.delegated.get(role)
        key = f"{role}.json"
        if (
            old is None
            or old.signed.targets != role_targets
            or resign_all
            or _stale(old, root, now)
        ):
            # Past any version the snapshot ever listed: a release removed and published again
            # must not look like a rollback to a device that saw it before.
            version = old_meta[key].version + 1 if key in old_meta else 1
            new = Targets(version=version, expires=at[Targets.type], targets=role_targets)
            data = sign(Metadata(new))
            files[f"{version}.{key}"] = data
            meta[key] = meta_file(version, data)
        else:
            meta[key] = old_meta[key]
    for key, listed in old_meta.items():
        # A removed release's role stays listed (ngclient refuses a snapshot that drops a file
        # it listed before); it is no longer delegated, so no device fetches it.
        meta.setdefault(key, listed)
    top = state.targets.signed
    delegations = release_roles.delegations(root, wanted)
    if (
        top.targets
        or top.delegations != delegations
        or resign_all
        or _stale(state.targets, root, now)
    ):
        new_top = Targets(
            version=top.version + 1,
            expires=at[Targets.type],
            targets={},
            delegations=delegations,
        )
        data = sign(Metadata(new_top))
        files[f"{new_top.version}.targets.json"] = data
        meta[TARGETS_META] = meta_file(new_top.version, data)
    else:
        meta[TARGETS_META] = old_meta[TARGETS_META]
    snapshot_meta = state.timestamp.signed.snapshot_meta
    # A role signed anew, or one gone (a removed release): the snapshot lists them all.
    if files or meta != old_meta or resign_all or _stale(state.snapshot, root, now):
        version = state.snapshot.signed.version + 1
        data = sign(Metadata(Snapshot(version, expires=at[Snapshot.type], meta=meta)))
        files[f"{version}.snapshot.json"] = data
        snapshot_meta = meta_file(version, data)
    if files or force_timestamp or _stale(state.timestamp, root, now):
        version = state.timestamp.signed.version + 1
        files[TIMESTAMP] = sign(
            Metadata(Timestamp(version, expires=at[Timestamp.type], snapshot_meta=snapshot_meta))
        )
    return files


def signing(root: Root, signers: Mapping[str, list[Signer]]) -> Sign:
    """Sign metadata with its role's signers and prove the root accepts the result, so the
    repository never publishes what every device would reject."""

    def sign(md: Metadata[Any]) -> bytes:
        role = md.signed.type
        for signer in signers[role]:
            md.sign(signer, append=True)
        try:
            root.verify_delegate(role, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as e:
            raise ThresholdError(
                f"signing {role} v{md.signed.version} met no threshold of root "
                f"v{root.version} ({e}); check that each online-N.pub matches its .key"
            ) from e
        return md.to_bytes(_JSON)

    return sign

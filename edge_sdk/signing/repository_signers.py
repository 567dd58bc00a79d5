"""The keyring as the repository needs it: the root versions it must publish, walked the way a
client walks them, and the online keys that sign each role.

The repository holds no keys of its own: every change reads the keyring afresh, so a rotation
(``edge-sdk keys rotate``) reaches the next refresh without any other step.
"""

from __future__ import annotations

import re
from pathlib import Path

# The ignores: python-tuf and securesystemslib re-export these names without __all__, which
# mypy --strict (no implicit re-export) flags; the names and their types still resolve.
from securesystemslib.signer import Signer  # type: ignore[attr-defined]
from tuf.api.metadata import Root, Snapshot, Targets, Timestamp  # type: ignore[attr-defined]

from edge_sdk.core.trust.pinned_root import TrustRoot
from edge_sdk.core.trust.root_file import load_trust_root
from edge_sdk.errors import KeyFileError
from edge_sdk.signing.key_files import load_public_key, load_signer

_ONLINE_KEY = re.compile(r"^online-(\d+)\.key\Z")


def walk_roots(keyring: Path, have: tuple[bytes, ...]) -> tuple[TrustRoot, list[bytes]]:
    """The keyring's current root, reached from the repository's newest (or from 1.root.json)
    the way a client walks N.root.json, and the root files the repository lacks."""
    latest = load_trust_root(keyring)

    def read(version: int) -> bytes:
        path = keyring / f"{version}.root.json"
        if not path.is_file():
            raise KeyFileError(
                f"{path} is missing: clients need every root version; restore it to the keyring"
            )
        return path.read_bytes()

    if have:
        if read(len(have)) != have[-1]:
            raise KeyFileError(
                f"{keyring} is not this repository's keyring (its root v{len(have)} differs); "
                "pass the keyring the repository was created with"
            )
        trust, added = TrustRoot.from_bytes(have[-1], f"{len(have)}.root.json"), []
    else:
        first = read(1)
        trust, added = TrustRoot.from_bytes(first, str(keyring / "1.root.json")), [first]
    if latest.version < trust.version:
        raise KeyFileError(
            f"{keyring} holds root v{latest.version}, older than the repository's "
            f"v{trust.version}; pass the keyring the repository was created with"
        )
    while trust.version < latest.version:
        data = read(trust.version + 1)
        trust = trust.next_root(data, str(keyring / f"{trust.version + 1}.root.json"))
        added.append(data)
    if not trust.root.consistent_snapshot:
        raise KeyFileError(
            f"root v{trust.version} in {keyring} has consistent_snapshot off, but this repository "
            "publishes versioned snapshots; use a keyring made by `edge-sdk keys init`"
        )
    return trust, added


def online_signers(keyring: Path, root: Root) -> dict[str, list[Signer]]:
    """Up to each online role's threshold of the keyring's online-N.key files that ``root``
    trusts for it, newest key first (older keys are the ones a rotation revokes next)."""
    numbered = sorted(
        ((int(m[1]), p) for p in keyring.glob("online-*.key") if (m := _ONLINE_KEY.match(p.name))),
        reverse=True,
    )
    # The .pub files name a key without decrypting it; a mismatched pair fails when
    # metadata_plan.signing() signs with it.
    keyids = {
        p: load_public_key(p.with_suffix(".pub") if p.with_suffix(".pub").exists() else p).keyid
        for _, p in numbered
    }
    loaded: dict[Path, Signer] = {}
    result = {}
    for role in (Targets.type, Snapshot.type, Timestamp.type):
        delegation = root.roles[role]
        usable = [p for _, p in numbered if keyids[p] in delegation.keyids]
        if len(usable) < delegation.threshold:
            raise KeyFileError(
                f"{keyring} has {len(usable)} of the {delegation.threshold} online key(s) root "
                f"v{root.version} trusts for {role}; bring back the online-N.key files or "
                "rotate keys (`edge-sdk keys rotate`)"
            )
        for path in usable[: delegation.threshold]:
            if path not in loaded:
                loaded[path] = load_signer(path)
        result[role] = [loaded[p] for p in usable[: delegation.threshold]]
    return result

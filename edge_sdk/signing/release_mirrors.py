"""Signed mirror lists: the HTTP(S) stores a device may fetch a release's chunks from.

The list rides in ``custom["mirrors"]`` of every manifest target of the release, so it is signed
with the targets: a device fetches only from stores the fleet's keys named, in the listed order
(``agent.update.transfer`` reads it). Pure; :meth:`Repository.set_mirrors
<edge_sdk.signing.repository.Repository.set_mirrors>` signs and writes the result.
"""

from __future__ import annotations

from collections.abc import Mapping

# The ignore: python-tuf re-exports these names without __all__, which mypy --strict (no
# implicit re-export) flags; the names and their types still resolve.
from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]

from edge_sdk.core.bundle import MANIFEST
from edge_sdk.signing.release_targets import CUSTOM, release_prefix

MIRRORS = "mirrors"  # agent.update.release.MIRRORS


def with_mirrors(
    current: Mapping[str, TargetFile], name: str, version: int, mirrors: list[str]
) -> dict[str, TargetFile] | None:
    """``current`` with ``custom["mirrors"] = mirrors`` on every manifest target of the
    release (each variant's); None when nothing changes. The mirror list is signed with the
    targets, so a device fetches only from stores the fleet's keys named."""
    prefix = release_prefix(name, version)
    result = dict(current)
    changed = False
    for path, target in current.items():
        if not (path.startswith(prefix) and path.rsplit("/", 1)[-1] == MANIFEST):
            continue
        custom = dict(target.unrecognized_fields.get(CUSTOM) or {})
        if custom.get(MIRRORS, []) == mirrors:
            continue
        if mirrors:
            custom[MIRRORS] = list(mirrors)
        else:
            custom.pop(MIRRORS, None)
        result[path] = TargetFile(target.length, dict(target.hashes), path, {CUSTOM: custom})
        changed = True
    return result if changed else None

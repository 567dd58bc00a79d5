"""One delegated TUF targets role per release, so a device downloads only its own release's
chunk lists.

Every file of a release is a target carrying its chunk list (about 80 bytes a chunk: 6 KB for
a 5 MB model). Kept in the top-level targets metadata, every device fetched every release's
lists on each update: 20 KB with three releases, and growing with each one published
(bench/bench_fleet.py --scale, README "Fleet scale benchmark"). With a delegation per release
(TUF's own mechanism, spec section 4.5), the top-level targets holds only the delegations, a
few hundred bytes each, and python-tuf's ngclient fetches a delegated role only when a device
looks up a path under it: the one release it installs.

The delegated roles are signed by the online targets keys (the delegation names the keys and
threshold the root gives the targets role), so key rotation and the root's threshold apply to
them unchanged. Pure functions; :mod:`edge_sdk.signing.repository` does the signing and the files.
"""

from __future__ import annotations

from collections.abc import Mapping

from tuf.api.metadata import (  # type: ignore[attr-defined]
    DelegatedRole,
    Delegations,
    Root,
    TargetFile,
    Targets,
)


def role_of(path: str) -> str:
    """The delegated role holding ``path`` (``<model>/<version>/...``): ``<model>-v<version>``.
    Model names are letters, digits, '.', '_' and '-' (bundle.check_name), so the role name
    needs no quoting in a URL (ngclient quotes it) or an MQTT topic."""
    name, version, _rest = path.split("/", 2)
    return f"{name}-v{int(version)}"


def patterns_of(path: str) -> list[str]:
    """A release's paths: its first variant's files and each further profile's directory (a
    TUF path pattern's ``*`` does not cross a ``/``)."""
    name, version, _rest = path.split("/", 2)
    return [f"{name}/{version}/*", f"{name}/{version}/*/*"]


def split(targets: Mapping[str, TargetFile]) -> dict[str, dict[str, TargetFile]]:
    """role -> the targets it signs."""
    roles: dict[str, dict[str, TargetFile]] = {}
    for path, target in targets.items():
        roles.setdefault(role_of(path), {})[path] = target
    return roles


def delegations(root: Root, roles: Mapping[str, Mapping[str, TargetFile]]) -> Delegations | None:
    """The top-level targets' delegations: each role to the root's targets keys, terminating
    (a path under a release is never looked for anywhere else)."""
    if not roles:
        return None
    trusted = root.roles[Targets.type]
    keyids = sorted(trusted.keyids)
    delegated = {}
    for role, targets in sorted(roles.items()):
        first = next(iter(targets))
        delegated[role] = DelegatedRole(role, keyids, trusted.threshold, True, patterns_of(first))
    return Delegations({k: root.keys[k] for k in keyids}, delegated)


def flatten(top: Targets, delegated: Mapping[str, Targets]) -> dict[str, TargetFile]:
    """Every target of the repository, wherever it is signed: the view the repository's
    queries and changes work on (a repository from before delegations holds its targets at
    the top level; the next change moves them into roles)."""
    found = dict(top.targets)
    for md in delegated.values():
        found.update(md.targets)
    return found

"""Model names and versions: how a bundle's model is named, the integer version devices compare
(anti-rollback) and the label people read.

Shared by the build (naming a bundle), the fleet (assignments, status) and the agent (its
configuration and messages); the manifest reader checks the same name rule.
"""

from __future__ import annotations

import re

from edge_sdk.errors import InputError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_SEMVER = re.compile(r"^(\d{1,4})\.(\d{1,3})\.(\d{1,3})\Z")


def is_model_name(name: str) -> bool:
    """Whether ``name`` is 1-64 letters, digits, '.', '_' or '-', led by a letter or digit."""
    return _NAME.match(name) is not None


def check_name(name: str) -> str:
    if not is_model_name(name):
        raise InputError(
            f"model name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit; pass --name"
        )
    return name


def parse_version(text: str) -> tuple[int, str]:
    """An integer version, or a semantic version mapped onto a monotonic integer.

    Devices compare the integer (anti-rollback); the label is what people read. ``1.2.3`` becomes
    1002003 so that semver order and integer order agree.
    """
    if text.isdigit() and int(text) > 0:
        return int(text), text
    match = _SEMVER.match(text)
    if match:
        major, minor, patch = (int(g) for g in match.groups())
        return major * 1_000_000 + minor * 1_000 + patch, text
    raise InputError(
        f"--version {text!r} must be a positive integer (e.g. 7) or MAJOR.MINOR.PATCH (e.g. 1.2.0)"
    )


def format_version(number: int) -> str:
    """The label a person reads for an integer version when only the integer is at hand.

    The inverse of :func:`parse_version` for semantic versions (1002003 is ``1.2.3``); a plain
    integer version (below 1000000) reads as itself. Where a manifest is at hand its ``label``
    is the user's own spelling and wins.
    """
    if number >= 1_000_000:
        major, rest = divmod(number, 1_000_000)
        minor, patch = divmod(rest, 1_000)
        return f"{major}.{minor}.{patch}"
    return str(number)


def shown_label(label: str) -> str:
    """How a message names a version by its manifest label: ``v1.2.0`` for a number, a label of
    the user's own words as written (``--label 2026-06-rc1``), and never ``vv1``."""
    return f"v{label}" if label[:1].isdigit() else label

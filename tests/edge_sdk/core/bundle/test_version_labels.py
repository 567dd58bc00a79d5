"""Where a person reads a version, it is the label its user wrote (``v1.2.0``, or their own
words), not the integer devices compare: ``verify`` and ``inspect`` on a real signed bundle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edge_sdk.core.bundle import write_bundle
from edge_sdk.core.bundle.versions import shown_label
from edge_sdk.fleet.publish import signed_for_fleet
from testing.agents import make_bundle, replace_manifest

Cli = Callable[..., tuple[int, str, str]]


def test_shown_label() -> None:
    assert shown_label("1.2.0") == "v1.2.0"
    assert shown_label("7") == "v7"
    assert shown_label("v7") == "v7"  # build's default label for an automatic version
    assert shown_label("spring-rc1") == "spring-rc1"


def test_verify_and_inspect_name_the_version_by_its_label(
    cli: Cli, tmp_path: Path, keyring: Path
) -> None:
    built = replace_manifest(make_bundle(keyring, 1_002_000, signed=False), label="1.2.0")
    path = tmp_path / "digits.edgebundle"
    write_bundle(path, signed_for_fleet(built, keyring)[0])
    code, out, err = cli("verify", path, "--trust-root", keyring / "root.json")
    assert code == 0, err
    assert out.startswith("verified digits v1.2.0 (x86-64)"), out
    code, out, err = cli("inspect", path)
    assert code == 0, err
    title = out.strip().splitlines()[0]
    assert title.strip() == "digits v1.2.0", out

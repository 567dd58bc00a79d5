"""``edge-sdk keys ...`` end to end through ``edge_sdk.cli.run``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_sdk.signing.keys import PASSPHRASE_ENV

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _no_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def no_secrets(out: str) -> None:
    assert "PRIVATE KEY" not in out and "-----BEGIN" not in out


def test_init_json(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli(
        "keys", "init", tmp_path / "ring", "--online", "3", "--threshold", "2", "--json"
    )
    assert code == 0, err
    info = json.loads(out)
    assert info["root_version"] == 1
    assert info["threshold"] == 2
    assert len(info["online_keyids"]) == 3
    assert set(info["roles"]) == {"root", "targets", "snapshot", "timestamp"}
    assert (tmp_path / "ring" / "online-3.key").exists()
    no_secrets(out)


def test_init_human(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli("keys", "init", tmp_path / "ring", "--expires-days", "30")
    assert code == 0, err
    assert "root.key offline" in out and "root.json v1" in out and "targets" in out
    no_secrets(out)


def test_init_refuses_to_overwrite(cli: Cli, tmp_path: Path) -> None:
    assert cli("keys", "init", tmp_path / "ring")[0] == 0
    code, out, err = cli("keys", "init", tmp_path / "ring")
    assert code == 2 and out == ""
    assert "already holds a keyring" in one_error_line(err)


@pytest.mark.parametrize(
    "args", [["--online", "2", "--threshold", "3"], ["--online", "0"], ["--expires-days", "0"]]
)
def test_init_bad_numbers(cli: Cli, tmp_path: Path, args: list[str]) -> None:
    code, _, err = cli("keys", "init", tmp_path / "ring", *args)
    assert code == 2
    one_error_line(err)


def test_rotate_with_revoke_json(cli: Cli, tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    cli("keys", "init", ring)
    code, out, err = cli("keys", "rotate", ring, "--revoke", ring / "online-1.key", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["root_version"] == 2
    assert [Path(p).name for p in info["history"]] == ["1.root.json", "2.root.json"]
    revoked = next(k for k in info["keys"] if Path(k["path"]).name == "online-1.key")
    assert revoked["roles"] == [] and revoked["keyid"] not in info["online_keyids"]
    no_secrets(out)


def test_rotate_with_a_revoke_file_that_is_not_a_key(cli: Cli, tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    cli("keys", "init", ring)
    junk = tmp_path / "junk.key"
    junk.write_bytes(os.urandom(32))
    code, _, err = cli("keys", "rotate", ring, "--revoke", junk)
    assert code == 2
    assert str(junk) in one_error_line(err)


def test_rotate_without_root_key(cli: Cli, tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    cli("keys", "init", ring)
    (ring / "root.key").rename(tmp_path / "root.key")
    code, _, err = cli("keys", "rotate", ring)
    assert code == 2 and "--root-key" in one_error_line(err)
    code, out, err = cli("keys", "rotate", ring, "--root-key", tmp_path / "root.key")
    assert code == 0, err
    assert "root.json v2" in out


def test_rotate_root(cli: Cli, tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    _, out, _ = cli("keys", "init", ring, "--json")
    before = json.loads(out)
    code, out, err = cli("keys", "rotate-root", ring, "--json")
    assert code == 0, err
    after = json.loads(out)
    assert after["root_version"] == 2
    assert after["root_keyids"] != before["root_keyids"]
    assert after["online_keyids"] == before["online_keyids"]
    no_secrets(out)


def test_show_dir_and_root_json(cli: Cli, tmp_path: Path) -> None:
    ring = tmp_path / "ring"
    cli("keys", "init", ring, "--online", "2", "--threshold", "2")
    code, out, err = cli("keys", "show", ring)
    assert code == 0, err
    assert "2 of 2" in out and "online-2.key" in out
    no_secrets(out)
    code, out, err = cli("keys", "show", ring / "root.json", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["roles"]["targets"]["threshold"] == 2
    assert info["expires"].endswith("Z")


@pytest.mark.parametrize("content", [None, b"", b"{}", b"\x00\x01garbage"])
def test_show_bad_trust_root(cli: Cli, tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "root.json"
    if content is not None:
        path.write_bytes(content)
    code, out, err = cli("keys", "show", path)
    assert code == 2 and out == ""
    assert str(path) in one_error_line(err)

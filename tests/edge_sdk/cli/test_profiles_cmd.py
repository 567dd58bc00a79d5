"""``edge-sdk profiles list|show`` as a person reads them: a table of every profile on the search
path, and one profile in full, by id or by file (the JSON forms: tests/edge_sdk/cli/
test_build_cmd.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edge_sdk.core.profiles import ENV_PROFILE_PATH, builtin_profile_dir

Cli = Callable[..., tuple[int, str, str]]


def test_list_shows_every_builtin_profile_with_its_precision_order(cli: Cli) -> None:
    code, out, err = cli("profiles", "list")
    assert (code, err) == (0, "")
    assert "hardware profiles" in out
    for path in builtin_profile_dir().glob("*.toml"):
        assert path.stem in out
    row = next(line for line in out.splitlines() if " coral-edgetpu " in line)
    assert "tflite" in row and "int8_full" in row


def test_a_profile_on_the_search_path_is_listed_and_shown(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (builtin_profile_dir() / "x86-64.toml").read_text()
    (tmp_path / "lab-box.toml").write_text(text.replace('id = "x86-64"', 'id = "lab-box"'))
    monkeypatch.setenv(ENV_PROFILE_PATH, str(tmp_path))
    code, out, _ = cli("profiles", "list")
    assert code == 0 and " lab-box " in out
    code, out, _ = cli("profiles", "show", "lab-box")
    rows = [line.replace("\u2502", " ").split() for line in out.splitlines()]
    assert code == 0 and rows[0] == ["lab-box"]  # the title, then a row per key
    assert ["id", "lab-box"] in rows and ["runtime", "onnx"] in rows


def test_show_takes_a_file_path_too(cli: Cli) -> None:
    code, out, _ = cli("profiles", "show", str(builtin_profile_dir() / "jetson-orin.toml"))
    assert code == 0 and out.split()[0] == "jetson-orin"

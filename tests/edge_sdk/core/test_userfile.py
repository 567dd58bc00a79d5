"""Reading a file the user named: a regular file up to a cap, and everything else (a FIFO, a
device, a directory, a file too large, TOML that is not) one line of the caller's error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_sdk.core.userfile import MAX_KEY_DEPTH, load_toml, read_user_file
from edge_sdk.errors import ConfigError, InputError


def test_a_file_within_the_cap_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "profile.toml"
    path.write_bytes(b"x" * 1024)
    assert read_user_file(path, "profile file", 1024) == b"x" * 1024


def test_a_file_over_the_cap_is_one_line_with_the_cap_in_words(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b"x" * (64 * 1024 + 1))
    with pytest.raises(ConfigError) as info:
        read_user_file(path, "config file", 64 * 1024, ConfigError)
    message = str(info.value)
    assert message == (
        f"config file {path} is 65537 bytes, more than the 64 KiB allowed; is it the right file?"
    )


def test_a_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    # Opening a FIFO with no writer would block forever: the refusal must come from stat.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(
        InputError, match=r"key file .*pipe is a FIFO \(named pipe\), not a regular"
    ):
        read_user_file(fifo, "key file", 1024)


@pytest.mark.parametrize(
    ("name", "words"),
    [("/dev/zero", "is a device"), ("/", "is a directory"), ("/nonexistent/x", "does not exist")],
)
def test_what_is_not_a_regular_file_is_one_line(name: str, words: str) -> None:
    with pytest.raises(InputError, match=words) as info:
        read_user_file(Path(name), "data file", 1024)
    assert "\n" not in str(info.value)


def test_without_a_name_the_message_starts_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=rf"^{tmp_path}/absent: does not exist"):
        read_user_file(tmp_path / "absent", "", 10)


def test_toml_is_parsed_and_bad_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[device]\nid = "cam-01"\n')
    assert load_toml(path, "config file", 1024) == {"device": {"id": "cam-01"}}
    path.write_text('[device]\nid = "cam-01\n')
    with pytest.raises(ConfigError, match=r"is not valid TOML: .*line 2.*; fix the syntax"):
        load_toml(path, "config file", 1024, ConfigError)


def test_toml_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b'id = "\xff"\n')
    with pytest.raises(InputError, match=r"is not UTF-8 text \(byte 6\); save it as UTF-8"):
        load_toml(path, "config file", 1024)


def test_toml_nested_past_the_caps_is_refused_before_parsing(tmp_path: Path) -> None:
    # Both would cost the parser memory or stack far beyond what any config needs.
    path = tmp_path / "deep.toml"
    path.write_text("\n" + ".".join(["k"] * (MAX_KEY_DEPTH + 1)) + " = 1\n")
    with pytest.raises(InputError, match=r"dotted key nested more than 32 levels \(line 2\)"):
        load_toml(path, "config file", 1 << 20)
    path.write_text("a = " + "[" * 10_000 + "]" * 10_000 + "\n")
    with pytest.raises(InputError, match="arrays or tables nest too deep"):
        load_toml(path, "config file", 1 << 20)

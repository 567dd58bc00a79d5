"""The entry point both console scripts share: the command's code is the exit status, and Ctrl-C
or SIGTERM is one line on stderr and 130 or 143."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence

import pytest

from edge_sdk.core.entry import guarded_main


def _exit_code(run: object, capfd: pytest.CaptureFixture[str]) -> tuple[object, str]:
    with pytest.raises(SystemExit) as info:
        guarded_main(run)  # type: ignore[arg-type]
    return info.value.code, capfd.readouterr().err


def test_the_commands_code_is_the_exit_status(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["edge-sdk", "version", "--json"])
    seen: list[Sequence[str]] = []

    def run(argv: Sequence[str]) -> int:
        seen.append(argv)
        return 3

    assert _exit_code(run, capfd) == (3, "")
    assert seen == [["version", "--json"]]


def test_ctrl_c_is_one_line_and_130(capfd: pytest.CaptureFixture[str]) -> None:
    def run(_argv: Sequence[str]) -> int:
        raise KeyboardInterrupt

    assert _exit_code(run, capfd) == (130, "interrupted\n")


def test_sigterm_is_one_line_and_143(capfd: pytest.CaptureFixture[str]) -> None:
    def run(_argv: Sequence[str]) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler raises here
        return 0

    assert _exit_code(run, capfd) == (143, "terminated\n")

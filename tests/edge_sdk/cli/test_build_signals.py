"""``edge-sdk build`` interrupted or raced: Ctrl-C and SIGTERM at any moment are one line and
130/143 with no temporary folder left behind; two builds of one bundle into one --out cannot
both succeed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.edge_sdk.cli.progress import messages

DIGITS = Path(__file__).parents[3] / "examples" / "digits"
MODEL = DIGITS / "model.onnx"

Cli = Callable[..., tuple[int, str, str]]


def _catches_sigterm(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def _start_build(tmp_path: Path, out: Path) -> tuple[subprocess.Popen[str], Path]:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(scratch)}
    argv = [str(MODEL), "-p", "x86-64", "--validation", str(DIGITS / "validation.npz")]
    argv += ["--out", str(out), "--version", "1"]
    process = subprocess.Popen(
        [sys.executable, "-c", "from edge_sdk.cli import main; main()", "build", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # A signal during the interpreter's own start-up is Python's to handle, not ours: wait
    # until the entry point has put its handlers in place (SIGTERM caught, in the kernel's view).
    deadline = time.monotonic() + 60
    while not _catches_sigterm(process.pid):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.002)
    return process, scratch


def test_sigterm_mid_build_removes_its_temporary_folders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    process, scratch = _start_build(tmp_path, out)
    deadline = time.monotonic() + 120
    while not list(scratch.glob("edge-sdk-build-*")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the build never made its temporary folder"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert messages(stderr) == ["terminated"], stderr
    # No edge-sdk-build-*, no optimizer scratch (onnxruntime's own .ses session file may stay).
    assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == []
    assert list(out.iterdir()) == []  # no bundle, no temp file, no lock


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.7, 1.5])
def test_ctrl_c_at_any_moment_is_one_line_and_130(tmp_path: Path, delay: float) -> None:
    out = tmp_path / "out"
    process, scratch = _start_build(tmp_path, out)
    time.sleep(delay)  # while importing, parsing, or building
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and len(messages(stderr)) == 1, (stdout, stderr)
    assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == []
    assert not out.exists() or list(out.iterdir()) == []


def test_keyboard_interrupt_before_the_command_starts(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import edge_sdk.cli

    def interrupted_import(argv: list[str]) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(edge_sdk.cli, "run", interrupted_import)
    with pytest.raises(SystemExit) as exit_:
        edge_sdk.cli.main()
    assert exit_.value.code == 130
    assert capfd.readouterr().err == "interrupted\n"  # written to fd 2 directly


def test_a_second_build_of_the_same_bundle_fails_while_the_first_runs(
    cli: Cli, tmp_path: Path
) -> None:
    from edge_sdk.build.output import claim as _claim

    out = tmp_path / "out"
    out.mkdir()
    target = out / "model-v4-x86-64.edgebundle"
    with _claim(target):  # what the first build holds from start to finish
        code, _, err = cli("build", MODEL, "-p", "x86-64", "--out", out, "--version", "4")
        assert code == 2, err
        assert "another build is writing" in err and len(messages(err)) == 1
        assert not target.exists()
    assert list(out.iterdir()) == []
    # Without a version both would pick the same next one: the same rule applies.
    with _claim(out / "model-v1-x86-64.edgebundle"):
        code, _, err = cli("build", MODEL, "-p", "x86-64", "--out", out)
        assert code == 2 and "another build is writing" in err


def test_two_builds_as_processes_one_wins(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _ = _start_build(tmp_path / "a", out)
    second, _ = _start_build(tmp_path / "b", out)
    results = [(*p.communicate(timeout=300), p.returncode) for p in (first, second)]
    codes = sorted(code for _, _, code in results)
    assert codes == [0, 2], results
    loser = next(err for _, err, code in results if code == 2)
    assert "another build is writing" in loser or "already exists" in loser
    assert sorted(p.name for p in out.iterdir()) == ["model-v1-x86-64.edgebundle"]

"""How every ``edge-sdk`` command ends (``run_app``): the exit code instead of an exit, our
errors as one line with their exit code, usage errors pointing at --help, a missing optional
dependency naming its extra, Ctrl-C as 130, and anything else a bug said as such."""

from __future__ import annotations

import pytest
import typer

from edge_sdk.cli._common import new_app, run_app
from edge_sdk.errors import BundleError


def _app(action: BaseException | int) -> typer.Typer:
    app = new_app("A test app.")

    @app.command()
    def go(times: int = 1) -> int:
        """Do it."""
        if isinstance(action, BaseException):
            raise action
        return action

    @app.command()
    def other() -> None:
        """Another command, so that `go` is a subcommand as in edge-sdk."""

    return app


def _run(
    action: BaseException | int, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str]:
    code = run_app(_app(action), list(argv or ["go"]), "edge-sdk")
    return code, capsys.readouterr().err


def test_the_commands_result_is_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(7, capsys) == (7, "")


def test_our_error_is_one_line_with_its_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(BundleError("a.edgebundle is truncated\n  at byte 12"), capsys) == (
        5,
        "error: a.edgebundle is truncated at byte 12\n",
    )


def test_a_usage_error_points_at_the_commands_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(0, capsys, "go", "--times", "many")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: ") and err.endswith("(see edge-sdk go --help)\n")


def test_a_missing_extra_is_named_and_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(ModuleNotFoundError("No module named 'onnx'", name="onnx"), capsys)
    assert code == 3 and "needs the 'host' extra here (onnx is not installed)" in err


def test_ctrl_c_in_a_command_is_130() -> None:
    assert run_app(_app(KeyboardInterrupt()), ["go"], "edge-sdk") == 130


def test_ctrl_c_in_a_command_says_interrupted(capfd: pytest.CaptureFixture[str]) -> None:
    run_app(_app(KeyboardInterrupt()), ["go"], "edge-sdk")
    assert capfd.readouterr().err.endswith("interrupted\n")


def test_a_bug_is_one_line_unless_debugging(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGE_SDK_DEBUG", raising=False)
    assert _run(KeyError("slot"), capsys) == (
        70,
        "internal error: KeyError: 'slot' (set EDGE_SDK_DEBUG=1 for a traceback and please "
        "report it)\n",
    )
    monkeypatch.setenv("EDGE_SDK_DEBUG", "1")
    with pytest.raises(KeyError):
        _run(KeyError("slot"), capsys)

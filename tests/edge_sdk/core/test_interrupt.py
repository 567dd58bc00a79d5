"""Ctrl-C and SIGTERM for the command-line tools: they unwind like exceptions (so ``with``
blocks clean up), except inside an import, where the registered cleanups run and the process
exits at once with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from edge_sdk.core.interrupt import Terminated, handled, message, on_abrupt_exit


def test_sigterm_unwinds_as_terminated_and_the_old_handlers_come_back() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    cleaned = []
    with pytest.raises(Terminated), handled():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # the handler raises here, inside the block
        finally:
            cleaned.append(True)  # a with block's exit, as for a temporary folder
    assert cleaned == [True]
    assert {s: signal.getsignal(s) for s in before} == before


def test_sigint_unwinds_as_keyboard_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt), handled():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(10)


def test_outside_the_main_thread_nothing_changes() -> None:
    seen = []

    def worker() -> None:
        with handled():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before]


def test_the_lines() -> None:
    assert (message(130), message(143)) == ("interrupted", "terminated")


def test_a_signal_inside_an_import_runs_the_cleanups_and_exits_at_once(tmp_path: Path) -> None:
    # Unwinding out of an import can crash native initialisers; so no `finally` runs, only the
    # actions registered with on_abrupt_exit, newest first.
    (tmp_path / "slow_import.py").write_text(
        "import os, signal, time\nos.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(30)\n"
    )
    log = tmp_path / "log"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from edge_sdk.core.interrupt import handled, on_abrupt_exit
        def note(word):
            with open({str(log)!r}, "a") as f:
                f.write(word + "\\n")
        with handled(), on_abrupt_exit(lambda: note("outer")):
            with on_abrupt_exit(lambda: note("inner")):
                try:
                    import slow_import
                finally:
                    note("finally")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr) == (143, "terminated\n")
    assert log.read_text().split() == ["inner", "outer"]


def test_an_action_is_registered_only_while_its_block_runs() -> None:
    from edge_sdk.core import interrupt

    def action() -> None:
        pass

    with on_abrupt_exit(action):
        assert action in interrupt._CLEANUPS
    assert action not in interrupt._CLEANUPS

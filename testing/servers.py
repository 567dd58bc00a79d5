"""One way to run a test server: a real program on a free loopback port, started in the
foreground with its output in a log file, waited for until it answers, stopped with SIGTERM.

Mosquitto (testing/mosquitto.py and the fleet's broker), nginx (testing/nginx.py) and SeaweedFS
(testing/seaweedfs.py) are all a ``ServerProcess``: they say how to launch and when they are
ready; port picking, the start retry, waiting, stopping and ``with`` live here once.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on ``HOST:port`` now."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def executable(name: str, install: str) -> str:
    """``name`` on PATH, else in /usr/sbin (where Debian puts servers, off a user's PATH)."""
    found = shutil.which(name)
    if found is not None:
        return found
    if os.access(f"/usr/sbin/{name}", os.X_OK):
        return f"/usr/sbin/{name}"
    raise FileNotFoundError(f"{name} not found on PATH or in /usr/sbin; {install}")


def terminate(proc: subprocess.Popen[bytes] | None, log: IO[bytes] | None) -> None:
    """SIGTERM and wait (Mosquitto saves its persistence on the way out), SIGKILL after 10 s."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if log is not None:
        log.close()


class PortTaken(RuntimeError):
    """Another process took the port between ``free_port()`` and the server's bind."""


class ServerProcess:
    """A server process this test owns: ``start()`` (subclasses), ``stop()``, ``restart()`` on
    the same port, ``close()``, ``with``, and the tail of its log."""

    _proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def _output_path(self) -> Path:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def _spawn(self, argv: Sequence[str], cwd: Path | None = None) -> None:
        """Run ``argv`` with stdout and stderr appended to ``_output_path``."""
        self._log = self._output_path.open("ab")
        self._proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )

    def _wait_ready(
        self, ready: Callable[[], bool], timeout_s: float, poll_s: float = 0.05
    ) -> bool:
        """Poll ``ready()`` until it holds (True) or the process exits or time runs out (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            if ready():
                return True
            time.sleep(poll_s)
        return False

    @staticmethod
    def _launch_on_a_free_port(
        first: bool, take: Callable[[int, int], None], start: Callable[[], None]
    ) -> None:
        """On a first start, ``take(port, attempt)`` a free port, then ``start()``.

        free_port() closes its socket before the server binds, so another process can take the
        port in between (``start()`` raises PortTaken); on a first start that is worth another
        try with a new port. Later starts (``restart()``) keep the port, so clients and saved
        URLs stay valid.
        """
        for attempt in range(3 if first else 1):
            if first:
                take(free_port(), attempt)
            try:
                start()
                return
            except PortTaken:
                if attempt == 2 or not first:
                    raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        log, self._log = self._log, None
        terminate(proc, log)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self._output_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

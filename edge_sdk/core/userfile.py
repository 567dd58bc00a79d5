"""Reading a file the user named (a config, a profile, a key, a data file), boundedly.

A user-named path can be anything: a FIFO (reading it blocks forever), a device (``/dev/zero``
never ends; opening ``/dev/watchdog`` arms a reboot), a directory, or a file far larger than any
config. So: look with ``stat`` first and refuse what is not a regular file without opening it,
open without blocking, check again on the open descriptor (the path may have changed between),
and read at most ``cap + 1`` bytes. Every refusal is one line of the caller's error class.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

from edge_sdk.core.jsondepth import MAX_DEPTH, too_deep
from edge_sdk.errors import InputError

KIB = 1 << 10
MIB = 1 << 20


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size(n: int) -> str:
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} MiB"
    if n >= KIB and n % KIB == 0:
        return f"{n // KIB} KiB"
    return f"{n} bytes"


def _name(what: str, path: Path) -> str:
    """How a message names the file: "profile file P" or, with no ``what``, "P:"."""
    return f"{what} {path}" if what else f"{path}:"


def check_regular_file(path: Path, what: str, error: type[InputError] = InputError) -> int:
    """Refuse ``path`` unless it is an existing regular file (symlinks followed); its size.

    Nothing is opened, so a FIFO or a device is refused without blocking or side effects.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{_name(what, path)} does not exist; fix the path") from None
    except NotADirectoryError:
        raise error(f"{_name(what, path)} does not exist (a parent is not a directory)") from None
    except OSError as e:
        raise error(f"{_name(what, path)} cannot be read: {e.strerror or e}") from None
    except ValueError as e:  # an embedded NUL byte in the path
        raise error(f"{what or 'path'} {str(path)!r} is not a valid path: {e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{_name(what, path)} is {_kind(st.st_mode)}, not a regular file; name a file")
    return st.st_size


def read_user_file(path: Path, what: str, cap: int, error: type[InputError] = InputError) -> bytes:
    """The bytes of the regular file ``path``, at most ``cap`` of them, or one ``error`` line.

    ``what`` names the file in messages ("config file", "profile file", "key file"); with ""
    a message starts "PATH: ".
    """
    check_regular_file(path, what, error)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise error(f"{_name(what, path)} does not exist; fix the path") from None
        raise error(f"{_name(what, path)} cannot be read: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped for something else since the stat above
            raise error(
                f"{_name(what, path)} is {_kind(st.st_mode)}, not a regular file; name a file"
            )
        if st.st_size > cap:
            raise error(
                f"{_name(what, path)} is {st.st_size} bytes, more than the {_size(cap)} allowed; "
                "is it the right file?"
            )
        chunks: list[bytes] = []
        total = 0
        while total <= cap:
            chunk = os.read(fd, min(cap + 1 - total, MIB))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as e:
        raise error(f"{_name(what, path)} cannot be read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if total > cap:  # it grew while we read
        raise error(
            f"{_name(what, path)} is more than the {_size(cap)} allowed; is it the right file?"
        )
    return b"".join(chunks)


# tomllib keeps every prefix of a dotted key (a.b.c...): memory grows with the square of the depth
# (16,000 levels in a 32 KB file take 1 GB). No real config nests keys this deep.
MAX_KEY_DEPTH = 32
_KEY = r"""(?:[A-Za-z0-9_-]++|"(?:[^"\\\n]|\\.)*+"|'[^'\n]*+')"""
_DEEP_KEY = re.compile(
    rf"""(?<![A-Za-z0-9_'"-]){_KEY}(?:[ \t]*+\.[ \t]*+{_KEY}){{{MAX_KEY_DEPTH},}}"""
)


def load_toml(
    path: Path, what: str, cap: int, error: type[InputError] = InputError
) -> dict[str, Any]:
    """Read (as :func:`read_user_file`) and parse a TOML file; every problem is one line."""
    data = read_user_file(path, what, cap, error)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(
            f"{_name(what, path)} is not UTF-8 text (byte {e.start}); save it as UTF-8"
        ) from None
    deep = _DEEP_KEY.search(text)
    if deep is not None:
        line = text.count("\n", 0, deep.start()) + 1
        raise error(
            f"{_name(what, path)} has a dotted key nested more than {MAX_KEY_DEPTH} levels "
            f"(line {line}); no config needs that many, fix the key there"
        )
    # tomllib recurses once per nested array or inline table, and only the interpreter's
    # recursion limit (which onnx2tf raises to 2**31-1 on import) stands before the C stack.
    if too_deep(text):
        raise error(
            f"{_name(what, path)} is not valid TOML: arrays or tables nest too deep "
            f"(more than {MAX_DEPTH} levels)"
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's message carries "(at line N, column M)".
        raise error(f"{_name(what, path)} is not valid TOML: {e}; fix the syntax there") from None
    except RecursionError:
        raise error(
            f"{_name(what, path)} is not valid TOML: arrays or tables nest too deep"
        ) from None

"""How deep a JSON text nests, counted in one linear pass before anyone parses it.

``json.loads`` recurses once per level of nesting, and only the interpreter's recursion limit
stops it before the C stack overflows. That limit is not ours to rely on: onnx2tf sets it to
2**31 - 1 when it is imported, and from then on 100 KB of ``[`` ends the process in a
segmentation fault instead of a ``RecursionError``. Every parser of JSON that a stranger or a
file can hand us checks :func:`too_deep` first.
"""

from __future__ import annotations

import re

MAX_DEPTH = 32  # our own documents nest at most 6 deep; TUF metadata about as much

# An escape pair, a quote, a bracket: one linear pass (a regex for whole strings would
# backtrack quadratically over an unterminated one full of escaped quotes).
_TOKEN = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)


def depth(data: bytes | str, cap: int = MAX_DEPTH) -> int:
    """The deepest ``[``/``{`` nesting outside strings, counted up to ``cap + 1``."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    level = deepest = 0
    in_string = False
    for match in _TOKEN.finditer(raw):
        token = match.group()
        if token == b'"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in (b"[", b"{"):
            level += 1
            if level > deepest:
                deepest = level
                if deepest > cap:
                    break
        else:
            level -= 1
    return deepest


def too_deep(data: bytes | str, cap: int = MAX_DEPTH) -> bool:
    # Nesting needs an opener per level: a text with no more than ``cap`` of them cannot be too
    # deep, and counting them runs in C (the token walk costs ~20 us on a v2 request's header).
    if isinstance(data, str):
        openers = data.count("[") + data.count("{")
    else:
        openers = data.count(b"[") + data.count(b"{")
    return openers > cap and depth(data, cap) > cap

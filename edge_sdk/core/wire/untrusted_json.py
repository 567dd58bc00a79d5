"""JSON that a party we do not trust sends (a device's report, a record on disk): read within
bounds, and its fields read one at a time, each falling back to "absent" when it is not what it
should be (``edge_sdk.core.wire.protocol`` reads the device's documents with these).

Nothing here raises on what the sender chose: a document that cannot be read is
``(None, why)``; a field of the wrong type, an integer outside 0..2^63-1 or a non-finite number
is absent; text is cut at ``MAX_TEXT_CHARS`` with its control characters replaced, because it
reaches an operator's terminal.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from edge_sdk.core.jsondepth import too_deep

MAX_DEPTH = 32  # the agent's status nests 5 deep
MAX_TEXT_CHARS = 2048  # a reason, group, profile, time: longer text is cut here
MAX_INT = 2**63 - 1


def read_document(payload: bytes | bytearray, limit: int) -> tuple[object, str]:
    """``(document, "")`` or ``(None, what is wrong with it)``; never raises.

    What a device (or a file) sends is bounded before it is parsed: ``limit`` bytes, nesting
    at most ``MAX_DEPTH`` deep (``json.loads`` would recurse once per level and raise
    ``RecursionError`` deep down), UTF-8, and plain JSON numbers (no ``NaN``/``Infinity``; an
    integer of thousands of digits is refused by Python itself).
    """
    if len(payload) > limit:
        return None, f"is {len(payload)} bytes, over the {limit} byte limit"
    if too_deep(bytes(payload), MAX_DEPTH):
        return None, f"nests deeper than {MAX_DEPTH} levels"
    try:
        return json.loads(bytes(payload).decode(), parse_constant=_no_constant), ""
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except (ValueError, RecursionError) as e:  # JSONDecodeError, huge ints, NaN
        # Python's own advice on long integers ("use sys.set_...") is not for the operator.
        return None, f"is not JSON: {printable(str(e).split('; use ')[0])[:200]}"


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def clean_text(value: object) -> str:
    """A device's text field for display: a string, cut to ``MAX_TEXT_CHARS``, its control
    characters replaced; "" for anything else."""
    return printable(value[:MAX_TEXT_CHARS]) if isinstance(value, str) else ""


# C0 and C1 controls, DEL, and lone surrogates (JSON's "\ud800" decodes to one, which no
# terminal or UTF-8 encoder takes): a device's text reaches the operator's terminal.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(value: str) -> str:
    """``value`` with its control characters (and lone surrogates) replaced by U+FFFD."""
    return _UNPRINTABLE.sub("\N{REPLACEMENT CHARACTER}", value)


def read_count(value: object) -> int:
    """A count: as :func:`optional_count`, 0 when absent."""
    found = read_optional_count(value)
    return 0 if found is None else found


def read_optional_count(value: object) -> int | None:
    """A version, serial or count: a non-negative 64-bit integer, or nothing."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT:
        return value
    return None


def read_finite(value: object) -> float:
    """A figure: a finite JSON number, 0.0 for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) else 0.0


def read_table(value: object) -> Mapping[str, Any] | None:
    """A JSON object, or None for anything else."""
    return value if isinstance(value, dict) else None

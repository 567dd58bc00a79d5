"""Hypothesis strategies for hostile JSON in a known envelope: take a valid document (a signed
assignment, a root.json) and replace, delete or add values anywhere in it with JSON that a
stranger could send (floats, NaN, huge integers, non-string keys' values, nested containers).

Editing a *valid* document keeps most of the envelope intact, so the input gets past the JSON
parser and into the code that reads fields and checks signatures, where the bugs are.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, -1, 2**31, 2**63, 2**64, 10**300, -(10**300)])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0.5, 1.0, -0.0, float("nan"), float("inf")])
    | st.text(max_size=12)
    | st.sampled_from(["", "targets", "root", "2030-01-01T00:00:00Z", "devices/dev-1", "digits"])
)
JSONISH = st.recursive(
    SCALARS,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=10,
)


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return sorted(node)
    if isinstance(node, list):
        return list(range(len(node)))
    return []


@st.composite
def edited(draw: st.DrawFn, document: Any, max_edits: int = 3) -> Any:
    """``document`` with 1 to ``max_edits`` values replaced, deleted or added at random paths."""
    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, max_edits))):
        node = doc
        while True:
            keys = _children(node)
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = node[key]
            if _children(child) and draw(st.integers(0, 3)):
                node = child  # go deeper, most of the time
                continue
            action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
            if action == "replace":
                node[key] = draw(JSONISH)
            elif action == "delete":
                del node[key]
            elif isinstance(node, dict):
                node[draw(st.text(max_size=8))] = draw(JSONISH)
            else:
                node.append(draw(JSONISH))
            break
    return doc


def encode(doc: Any) -> bytes:
    """JSON as a stranger may send it: NaN and Infinity included (Python's parser takes them)."""
    return json.dumps(doc, allow_nan=True).encode()

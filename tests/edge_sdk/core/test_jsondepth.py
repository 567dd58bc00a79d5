"""Deep JSON is refused before it is parsed, in every parser a stranger or a file can reach.

``json.loads`` recurses once per level; only the interpreter's recursion limit keeps that off
the end of the C stack, and onnx2tf sets the limit to 2**31 - 1 when it is imported (the test
suite's own process crashed in a segmentation fault on a hostile manifest after the TFLite
tests had run). So each parser is driven here in a process with that limit.
"""

from __future__ import annotations

import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from edge_sdk.core.jsondepth import MAX_DEPTH, depth, too_deep
from tests.conftest import REPO

_PROGRAM = r"""
import sys
sys.setrecursionlimit(2**31 - 1)  # what importing onnx2tf does
from agent.serving import codec
from agent.serving import oip
from edge_sdk import errors
from edge_sdk.core.bundle.manifest_json import parse_manifest_json
from edge_sdk.fleet.inventory import read_document
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.core.trust import TrustRoot, verify_files

bomb = b"[" * 2_000_000
obj_bomb = b'{"a":' * 500_000
spec = (TensorSpec("x", ("batch", 4), "float32", ""),)
for data in (bomb, obj_bomb):
    for name, call in (
        ("manifest", lambda: parse_manifest_json(data, "m")),
        ("predict", lambda: codec.decode(data, "application/json", spec)),
        ("v2 infer", lambda: oip.parse_infer(data, None, spec, codec.DEFAULT_LIMITS)),
        ("root", lambda: TrustRoot.from_bytes(data, "root.json")),
    ):
        try:
            call()
        except (errors.EdgeSdkError, codec.RequestError) as e:
            pass
        else:
            raise SystemExit(f"{name}: accepted")
    assert read_document(data, 10 << 20)[0] is None
print("ok")
"""


def test_every_json_parser_refuses_deep_nesting_with_an_unbounded_recursion_limit() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr)


@given(
    st.recursive(
        st.none() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_depth_is_the_nesting_json_itself_sees(value: object) -> None:
    import json

    def nesting(v: object) -> int:
        if isinstance(v, list):
            return 1 + max((nesting(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((nesting(x) for x in v.values()), default=0)
        return 0

    text = json.dumps(value)
    assert depth(text, cap=10_000) == nesting(value)
    assert too_deep(text) == (nesting(value) > MAX_DEPTH)


@given(
    st.recursive(
        st.none() | st.integers() | st.text(alphabet='[]{}"\\ab'),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
    ),
    st.integers(0, 4),
)
def test_the_opener_count_shortcut_never_changes_the_answer(value: object, cap: int) -> None:
    """too_deep skips the walk when a text has no more than ``cap`` openers; brackets inside
    strings count as openers there but not as nesting, so both sides of the shortcut occur."""
    import json

    for text in (json.dumps(value), json.dumps(value).encode()):
        assert too_deep(text, cap) == (depth(text, cap) > cap)

"""Which passes make each precision. The profile lists precisions; this table turns one into the
passes to run after the shared preparation (opset, optimise)."""

from __future__ import annotations

PREPARE = ("opset", "optimize")

RECIPES: dict[str, tuple[str, ...]] = {
    "fp32": (),
    "fp16": ("fp16",),
    "int8_dynamic": ("int8_dynamic",),
    "int8_static": ("int8_static",),
}

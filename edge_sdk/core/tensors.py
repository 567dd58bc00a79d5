"""Tensor descriptions shared by the build, the bundle manifest and the device runtime.

Pure data: no onnx or onnxruntime import, so the agent can use it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from edge_sdk.errors import BundleError, DataError

Dim = int | str  # an int is fixed; a str names a dynamic dimension ("batch", "?")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...]
    dtype: str  # numpy dtype name: "float32", "int64", ...
    layout: str = ""  # "NCHW", "NHWC", "NC", ... where it can be told; "" when unknown

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def with_sample_shape(self, sample_shape: tuple[int, ...]) -> TensorSpec:
        """Fix every dynamic dimension from one data sample's shape (batch dim excluded)."""
        if len(sample_shape) != len(self.shape) - 1:
            raise DataError(
                f"input '{self.name}': data has {len(sample_shape) + 1} dimensions "
                f"(samples first), the model expects {len(self.shape)} {format_shape(self.shape)}"
            )
        fixed: list[Dim] = [self.shape[0]]
        for axis, (want, got) in enumerate(zip(self.shape[1:], sample_shape, strict=True), start=1):
            if isinstance(want, int) and want != got:
                raise DataError(
                    f"input '{self.name}': dimension {axis} is {got} in the data but the model "
                    f"expects {want} (model shape {format_shape(self.shape)})"
                )
            fixed.append(got)
        return replace(self, shape=tuple(fixed))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "layout": self.layout,
        }

    @classmethod
    def from_json(cls, data: Any) -> TensorSpec:
        try:
            shape = tuple(d if isinstance(d, int) else str(d) for d in data["shape"])
            return cls(str(data["name"]), shape, str(data["dtype"]), str(data.get("layout", "")))
        except (KeyError, TypeError) as e:
            raise BundleError(f"manifest tensor entry is malformed: {data!r}") from e


def format_shape(shape: tuple[Dim, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def guess_layout(shape: tuple[Dim, ...]) -> str:
    """Name the layout of image-like and vector tensors; channel counts of 1, 3 or 4 decide."""
    if len(shape) == 4:
        if shape[1] in (1, 3, 4):
            return "NCHW"
        if shape[3] in (1, 3, 4):
            return "NHWC"
        return ""
    if len(shape) == 2:
        return "NC"
    if len(shape) == 3:
        return "NTC"
    return ""

"""A hardware profile's ``[image]`` table: how a folder of images becomes model input, which
values would break it, and the build's ``--image-*`` options applied on top of it.

Kept beside ``edge_sdk.core.profiles`` (which re-exports these names) so the profile module
stays about the profile itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from edge_sdk.errors import ProfileError

if TYPE_CHECKING:
    from edge_sdk.core.profiles import HardwareProfile


@dataclass(frozen=True)
class ImagePreprocess:
    """How a folder of images becomes model input: pixel * scale, then (x - mean) / std."""

    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)


def image_problem(image: ImagePreprocess) -> tuple[str, str] | None:
    """Which pre-processing value would turn pixels into NaN, Inf or a constant, and why."""
    if not (math.isfinite(image.scale) and image.scale > 0):
        return "scale", f"must be a finite number > 0, got {image.scale}"
    for key, values in (("mean", image.mean), ("std", image.std)):
        if not 1 <= len(values) <= 4:
            return key, f"must list 1 value, or one per channel (up to 4), got {len(values)}"
        if not all(math.isfinite(v) for v in values):
            return key, f"must hold finite numbers, got {list(values)}"
    if any(v <= 0 for v in image.std):
        return "std", f"must hold numbers > 0, got {list(image.std)}"
    return None


def override_image(
    profile: HardwareProfile, scale: float | None, mean: str | None, std: str | None
) -> HardwareProfile:
    """Apply --image-scale/--image-mean/--image-std on top of the profile's [image] table."""

    def numbers(flag: str, text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
        if text is None:
            return default
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise ProfileError(f"{flag} {text!r} must be comma-separated numbers") from None
        if flag == "--image-std" and any(v == 0 for v in values):
            raise ProfileError(f"{flag} {text!r} must not contain zero")
        return values

    image = ImagePreprocess(
        scale=profile.image.scale if scale is None else scale,
        mean=numbers("--image-mean", mean, profile.image.mean),
        std=numbers("--image-std", std, profile.image.std),
    )
    problem = image_problem(image)
    if problem is not None:
        key, message = problem
        raise ProfileError(f"--image-{key} {message}")
    return replace(profile, image=image)

"""A profile's [image] table: which values would break pre-processing, and the build's
--image-* options on top of a profile (one line each when refused)."""

from __future__ import annotations

import math

import pytest

from edge_sdk.core import profiles
from edge_sdk.core.profile_image import ImagePreprocess, image_problem, override_image
from edge_sdk.errors import ProfileError


@pytest.mark.parametrize(
    ("image", "key"),
    [
        (ImagePreprocess(scale=0.0), "scale"),
        (ImagePreprocess(scale=math.inf), "scale"),
        (ImagePreprocess(mean=()), "mean"),
        (ImagePreprocess(mean=(0.0,) * 5), "mean"),
        (ImagePreprocess(std=(math.nan,)), "std"),
        (ImagePreprocess(std=(0.0,)), "std"),
    ],
)
def test_values_that_break_pre_processing(image: ImagePreprocess, key: str) -> None:
    problem = image_problem(image)
    assert problem is not None and problem[0] == key


def test_a_sound_image_table_has_no_problem() -> None:
    assert image_problem(ImagePreprocess()) is None
    assert image_problem(ImagePreprocess(1.0, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))) is None


def test_options_override_the_profile() -> None:
    base = profiles.resolve_profile("x86-64")
    image = override_image(base, 1.0, "0.5,0.4,0.3", None).image
    assert image == ImagePreprocess(1.0, (0.5, 0.4, 0.3), base.image.std)
    assert override_image(base, None, None, None) == base
    with pytest.raises(ProfileError, match=r"^--image-std '0,1' must not contain zero$"):
        override_image(base, None, None, "0,1")
    with pytest.raises(ProfileError, match=r"^--image-scale must be a finite number > 0"):
        override_image(base, -1.0, None, None)


def test_profiles_re_exports_the_same_names() -> None:
    assert profiles.ImagePreprocess is ImagePreprocess
    assert profiles.override_image is override_image

"""The recipe tables: every pass a runtime's preparation or a precision's recipe names is a
registered pass, and every precision a built-in profile lists has a recipe for its runtime."""

from __future__ import annotations

import pytest

from converters import PASSES
from converters.recipes import ARTIFACT_SUFFIX, PREPARE, RECIPES
from edge_sdk.core.profiles import builtin_profile_dir, resolve_profile


def test_every_runtime_has_a_preparation_recipes_and_an_artifact_suffix() -> None:
    assert set(PREPARE) == set(RECIPES) == set(ARTIFACT_SUFFIX)


@pytest.mark.parametrize("runtime", sorted(RECIPES))
def test_every_named_pass_is_registered(runtime: str) -> None:
    named = set(PREPARE[runtime]).union(*RECIPES[runtime].values())
    assert named <= set(PASSES), sorted(named - set(PASSES))


@pytest.mark.parametrize("profile", sorted(p.stem for p in builtin_profile_dir().glob("*.toml")))
def test_every_builtin_profile_has_a_recipe_per_precision(profile: str) -> None:
    resolved = resolve_profile(profile)
    assert resolved.precisions and set(resolved.precisions) <= set(RECIPES[resolved.runtime])

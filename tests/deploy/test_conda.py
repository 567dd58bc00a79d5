"""environment.yml (the host's conda environment) against pyproject.toml: the conda-forge
packages cover the base dependencies and the [host] extra with the same lower bounds, and pip
installs the repository itself. conda-forge cannot be reached from here, so the environment is
checked, not solved."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
ENVIRONMENT = REPO / "environment.yml"
PYPROJECT = REPO / "pyproject.toml"

# A PyPI extra that conda-forge ships as a package of its own.
EXTRAS_AS_PACKAGES = {("securesystemslib", "crypto"): "cryptography"}


def _project() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads(PYPROJECT.read_text())["project"]
    return project


def _expand(extra: str) -> list[Requirement]:
    """The base dependencies and ``extra``, with the project's references to its own extras
    (``edgesdk-fleet[host]``) followed."""
    project = _project()
    name = canonicalize_name(str(project["name"]))
    extras: dict[str, list[str]] = project["optional-dependencies"]  # type: ignore[assignment]
    todo = [*project["dependencies"], *extras[extra]]  # type: ignore[misc]
    seen: set[str] = set()
    found: list[Requirement] = []
    while todo:
        requirement = Requirement(todo.pop())
        if canonicalize_name(requirement.name) == name:
            for inner in requirement.extras - seen:
                seen.add(inner)
                todo.extend(extras[inner])
        else:
            found.append(requirement)
    return found


def _environment() -> tuple[dict[str, SpecifierSet], list[str], dict[str, object]]:
    doc = yaml.safe_load(ENVIRONMENT.read_text())
    conda: dict[str, SpecifierSet] = {}
    pip: list[str] = []
    for dependency in doc["dependencies"]:
        if isinstance(dependency, dict):
            pip.extend(dependency["pip"])
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", dependency)
        assert match, dependency
        name, spec = match.groups()
        # conda's "=3.11" is a prefix match, PEP 440's "==3.11.*".
        spec = re.sub(r"^=(?!=)(.+)$", r"==\1.*", spec)
        conda[canonicalize_name(name)] = SpecifierSet(spec)
    return conda, pip, doc


def test_environment_is_conda_forge_only() -> None:
    _, _, doc = _environment()
    assert doc["channels"] == ["conda-forge", "nodefaults"]
    assert doc["name"] == "edge-sdk"


def test_conda_packages_cover_the_host_extra_with_its_bounds() -> None:
    conda, _, _ = _environment()
    for requirement in _expand("host"):
        name = canonicalize_name(requirement.name)
        assert name in conda, f"{requirement} (pyproject) is not in environment.yml"
        assert conda[name] == requirement.specifier, f"{name}: {conda[name]} vs {requirement}"
        for extra in requirement.extras:
            assert EXTRAS_AS_PACKAGES[(name, extra)] in conda, f"{requirement}: extra {extra}"


def test_conda_python_satisfies_requires_python() -> None:
    conda, _, _ = _environment()
    (python,) = conda["python"]
    version = python.version.removesuffix(".*")
    assert SpecifierSet(str(_project()["requires-python"])).contains(version)
    assert "pip" in conda


def test_pip_installs_the_repository_itself_and_nothing_else() -> None:
    _, pip, _ = _environment()
    assert pip == ["-e ."]

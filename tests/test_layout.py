"""The repository's import boundaries: benchmarks use ``testing/``, never ``tests/``; the
shipped packages import neither (issue 13: ``testing/`` is support shared by tests and
benchmarks, not part of the product)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PRODUCT = ("edge_sdk", "agent", "converters", "hardware_profiles")


def imported_roots(path: Path) -> Iterator[tuple[int, str]]:
    """Each absolute import's top-level package in PATH, with its line."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.partition(".")[0]


def offences(files: list[Path], forbidden: set[str]) -> list[str]:
    return [
        f"{path}:{line} imports {root}"
        for path in files
        for line, root in imported_roots(path)
        if root in forbidden
    ]


def test_a_tests_import_in_any_spelling_is_caught(tmp_path: Path) -> None:
    # The scan must see plain, from- and function-local imports, and skip relative ones.
    source = tmp_path / "m.py"
    source.write_text(
        "import tests.mosquitto\nfrom tests import conftest\nfrom testing.agents import wait_for\n"
        "def f():\n    import tests\nfrom . import sibling\n"
    )
    assert [line for line, _root in imported_roots(source) if _root == "tests"] == [1, 2, 5]
    assert len(offences([source], {"tests", "testing"})) == 4


def test_bench_imports_nothing_from_tests() -> None:
    files = sorted((REPO / "bench").glob("*.py"))
    assert files
    assert offences(files, {"tests"}) == []


@pytest.mark.parametrize("package", PRODUCT)
def test_product_imports_neither_tests_nor_testing(package: str) -> None:
    files = sorted((REPO / package).rglob("*.py"))
    assert offences(files, {"tests", "testing", "bench"}) == []


def test_the_import_rules_hold() -> None:
    """lint-imports checks pyproject.toml's contracts: the agent imports no host code, the
    converters and client stay small, nothing imports the CLI (its output names the chain)."""
    done = lint_imports()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_a_broken_import_rule_fails(tmp_path: Path) -> None:
    # The check above would pass on a linter that checks nothing: this rule is broken on
    # purpose (the CLI's build command imports the build pipeline).
    config = tmp_path / "broken.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["edge_sdk"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "broken on purpose"\ntype = "forbidden"\n'
        'source_modules = ["edge_sdk.cli"]\nforbidden_modules = ["edge_sdk.build.pipeline"]\n'
    )
    done = lint_imports("--config", str(config))
    assert done.returncode != 0 and "broken on purpose BROKEN" in done.stdout, done.stdout[-2000:]


def lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _LINT, "--no-cache", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


# lint-imports' own entry point, run by this interpreter (python -m importlinter.cli does
# nothing: the module has no __main__ block).
_LINT = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"


def test_every_product_module_is_under_the_no_cli_rule() -> None:
    """A module or subpackage added to edge_sdk/ is covered by 'nothing imports the CLI' only
    if listed."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    rule = next(c for c in contracts["contracts"] if c.get("forbidden_modules") == ["edge_sdk.cli"])
    top = REPO / "edge_sdk"
    modules = {f"edge_sdk.{p.stem}" for p in top.glob("*.py")} | {
        f"edge_sdk.{p.name}" for p in top.iterdir() if (p / "__init__.py").exists()
    }
    expected = modules - {"edge_sdk.__init__", "edge_sdk.cli"}
    assert expected <= set(rule["source_modules"]), sorted(expected - set(rule["source_modules"]))

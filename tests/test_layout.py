"""The repository's import boundaries: benchmarks use ``testing/``, never ``tests/``; the
shipped packages import neither (issue 13: ``testing/`` is support shared by tests and
benchmarks, not part of the product)."""

from __future__ import annotations

import ast
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

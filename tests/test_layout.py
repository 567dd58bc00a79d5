"""The repository's layout rules: benchmarks use ``testing/``, never ``tests/``; the shipped
packages import neither (issue 13: ``testing/`` is support shared by tests and benchmarks, not
part of the product); and every product module has its tests where a newcomer looks, in the
folder of ``tests/`` that mirrors its own."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
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


# --- tests mirror the package ------------------------------------------------------------------

MIRRORED = ("edge_sdk", "agent", "converters")

# Modules whose tests are in another file than the mirror folder holds: module -> (that test
# file, why). Keep it short: a module with a test file of its own belongs in the mirror folder.
# A reason starting "pending:" marks a module another change is still giving its test.
PENDING = "pending:"
_PASSES = (
    "tests/converters/test_passes.py",
    "runs each pass by its registered name on the digits model, all from one prepared model "
    "(opset, then optimize) and under one slow mark in tests/conftest.py: kept whole",
)
_FLEET_BENCH = "tests/edge_sdk/fleet/test_fleet_bench.py"
_BENCH_JOBS = "tests/edge_sdk/core/wire/test_bench_job_fuzz.py"
TESTED_ELSEWHERE: dict[str, tuple[str, str]] = {
    "agent/__main__.py": (
        "tests/agent/test_cli.py",
        "python -m agent: testing.agents.start_process runs it for the SIGTERM and Last Will tests",
    ),
    "agent/commands.py": (
        "tests/agent/test_cli.py",
        "the bodies of edge-agent's commands, run through agent.cli.run (version and the config "
        "lookup: tests/agent/test_cli_conventions.py)",
    ),
    "agent/completion.py": (
        "tests/agent/test_cli_conventions.py",
        "the completion scripts run in real bash, zsh and fish",
    ),
    "agent/bench_job.py": (
        _BENCH_JOBS,
        "judge (the device's decision on a job) beside the job format it decides on; the whole "
        f"job on an enrolled agent: {_FLEET_BENCH}",
    ),
    "agent/bench_run.py": (
        _FLEET_BENCH,
        "the benchmark child process: real jobs on an agent measure every candidate through it",
    ),
    "agent/serving/batching.py": (
        "tests/agent/serving/test_hot_swap.py",
        "test_dynamic_batching_merges_concurrent_requests_and_splits_answers, through the API",
    ),
    "converters/fp16.py": _PASSES,
    "converters/int8_dynamic.py": _PASSES,
    "converters/optimize.py": _PASSES,
    "converters/registry.py": _PASSES,
    "converters/tflite.py": (
        "tests/edge_sdk/build/test_build_tflite.py",
        "TensorFlow's converter through real builds, every tflite recipe among them",
    ),
    "edge_sdk/build/device_measure.py": (
        _BENCH_JOBS,
        "device_latency and judged_on_device beside the answers they read; build --measure-on "
        f"end to end: {_FLEET_BENCH}",
    ),
}


def product_modules(root: Path) -> list[Path]:
    """The modules of the shipped packages under ``root`` (generated protobuf code aside)."""
    return sorted(
        path
        for package in MIRRORED
        for path in (root / package).rglob("*.py")
        if path.name != "__init__.py" and "protos" not in path.relative_to(root).parts
    )


@functools.cache  # a test folder's files are read once for all its modules
def imported_modules(path: Path) -> frozenset[str]:
    """Every dotted name PATH imports absolutely: ``import a.b``, ``from a.b import c`` (both
    ``a.b`` and ``a.b.c``, since c may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(names)


def has_mirror_test(root: Path, module: Path) -> bool:
    """Whether tests/<module's folder>/ holds test_<module>.py or test_<module>_*.py (a private
    module's leading underscores dropped), or a test file that imports the module directly."""
    relative = module.relative_to(root)
    folder = root / "tests" / relative.parent
    tests = sorted(folder.glob("test_*.py"))
    stem = module.stem.strip("_")
    if any(t.stem == f"test_{stem}" or t.stem.startswith(f"test_{stem}_") for t in tests):
        return True
    dotted = ".".join(relative.with_suffix("").parts)
    return any(dotted in imported_modules(t) for t in tests)


def modules_without_mirror_test(root: Path, elsewhere: Mapping[str, object]) -> list[str]:
    return [
        str(relative)
        for module in product_modules(root)
        if str(relative := module.relative_to(root)) not in elsewhere
        and not has_mirror_test(root, module)
    ]


def test_tests_mirror_the_package() -> None:
    """Every product module has its tests where a newcomer looks (issue 13 item 6): for
    edge_sdk/core/atomic.py, tests/edge_sdk/core/test_atomic.py or a test file there that
    imports edge_sdk.core.atomic; otherwise a line in TESTED_ELSEWHERE says where and why."""
    missing = modules_without_mirror_test(REPO, TESTED_ELSEWHERE)
    assert missing == [], (
        "no test in the mirror folder of tests/ (add tests/<folder>/test_<module>.py, or a line "
        "in TESTED_ELSEWHERE naming the test file and why): " + ", ".join(missing)
    )


def test_every_exemption_names_a_module_and_a_test_file_that_exist() -> None:
    # A module moved or deleted, or a test file renamed, must not leave a stale excuse behind;
    # nor may a module that has a test in its mirror folder keep one (pending ones aside: the
    # change that gives them a test need not edit this file).
    modules = {str(p.relative_to(REPO)) for p in product_modules(REPO)}
    gone = [m for m in TESTED_ELSEWHERE if m not in modules]
    lost = [t for t, _why in TESTED_ELSEWHERE.values() if not (REPO / t).is_file()]
    needless = [
        m
        for m, (_test, why) in TESTED_ELSEWHERE.items()
        if m in modules and not why.startswith(PENDING) and has_mirror_test(REPO, REPO / m)
    ]
    assert (gone, lost, needless) == ([], [], [])


def test_a_module_without_a_mirror_test_is_reported(tmp_path: Path) -> None:
    # The rule above would pass on a scan that finds nothing: a small tree, checked both ways.
    for name in (
        "edge_sdk/core/named.py", "edge_sdk/core/imported.py", "edge_sdk/core/from_imported.py",
        "edge_sdk/core/_private.py", "edge_sdk/core/untested.py", "edge_sdk/core/excused.py",
        "edge_sdk/core/__init__.py", "agent/daemon.py", "agent/protos/oip_pb2.py",
        "edge_sdk/core/io.py", "converters/fp16.py",
    ):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    tests = tmp_path / "tests"
    (tests / "edge_sdk/core").mkdir(parents=True)
    (tests / "agent").mkdir()
    (tests / "edge_sdk/core/test_named_fuzz.py").write_text("")
    (tests / "edge_sdk/core/test_private.py").write_text("")
    (tests / "edge_sdk/core/test_iot.py").write_text("")  # another module's name, not io's
    (tests / "edge_sdk/core/test_other.py").write_text(
        "import edge_sdk.core.imported\ndef f():\n    from edge_sdk.core import from_imported\n"
    )
    # Imported from a test in another folder, or by a helper that is not a test: not found.
    (tests / "agent/test_daemon.py").write_text("from converters.fp16 import convert\n")
    (tests / "edge_sdk/core/helpers.py").write_text("from edge_sdk.core import untested\n")
    excused = {"edge_sdk/core/excused.py": ("tests/agent/test_daemon.py", "why")}
    assert modules_without_mirror_test(tmp_path, excused) == [
        "converters/fp16.py",
        "edge_sdk/core/io.py",
        "edge_sdk/core/untested.py",
    ]


def test_every_module_the_markers_name_exists() -> None:
    """tests/conftest.py marks tests slow, tensorflow or servers by their file's name: a renamed
    test file would silently leave those lists and land in the quick `-m "not slow"` loop."""
    from tests import conftest

    names = {p.stem for p in (REPO / "tests").rglob("test_*.py")}
    listed = conftest.SLOW_MODULES | conftest.TENSORFLOW_MODULES | conftest.SERVER_MODULES
    assert sorted(listed - names) == []

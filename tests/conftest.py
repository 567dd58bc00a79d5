"""Shared fixtures: the committed example models, a keyring, and one real build reused by many
tests (a build takes seconds; rebuilding it per test would make the suite crawl)."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from testing.fleet_broker import FleetBroker
    from testing.mosquitto import Broker

# Property-based and fuzz tests are seeded (derandomize: the same inputs on every run, so a
# failure in CI reproduces here) and bounded; EDGE_SDK_FUZZ_EXAMPLES raises the count locally.
settings.register_profile(
    "edge-sdk",
    derandomize=True,
    deadline=None,
    max_examples=int(os.environ.get("EDGE_SDK_FUZZ_EXAMPLES", "200")),
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("edge-sdk")

# CI runs the suite in parallel (pytest-xdist, README "Tests"). Its workers start with COLUMNS and
# LINES set to 80 x 24 where a serial run has none: commands that size their output from
# COLUMNS (piped output is 120 wide) would then print differently. A worker sees what a serial
# run sees; a test that wants a width sets COLUMNS itself.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)


@pytest.fixture(autouse=True, scope="module")
def _heap_frozen_per_module() -> Iterator[None]:
    """The agents these tests run in-process call ``gc.collect()`` after every update, to hand a
    replaced model's memory back (``agent.sysinfo.release_memory``). On a device that walks a
    small heap; in one long pytest process it walked every object all earlier tests left
    behind, and took 40% of the suite's time. So each module starts from a collected heap that
    is frozen (``gc.freeze``: out of the collector's sight), and a collection inside the module
    walks only what the module made."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    yield


# Markers (pyproject.toml declares them): `pytest -m "not slow"` runs the pure unit tests and
# the fast checks in under a minute; CI runs everything. A test is marked from what it uses:
# a broker fixture is `broker`; a module that starts real servers or containers is `servers`;
# one that converts with TensorFlow is `tensorflow`; a `*_fuzz` module is `fuzz`; each of those
# is also `slow`, as is a module listed in SLOW_MODULES (real builds, processes, the index).
BROKER_FIXTURES = frozenset(
    {"broker", "tls_broker", "broker_factory", "fleet_broker", "any_broker", "seaweed"}
)
TENSORFLOW_MODULES = frozenset(
    {
        "test_build_tflite",
        "test_keras_source",
        "test_onnx2tf_routes",
        "test_corpus",
        "test_second_runtime",
        "test_tflite_source",
        "test_tflite_source_fuzz",
    }
)
SERVER_MODULES = frozenset(
    {"test_container", "test_http_store", "test_stores", "test_tritonclient", "test_bridge"}
)
SLOW_MODULES = frozenset(
    {
        # real builds (onnxruntime's quantization, candidate timing)
        "test_build",
        "test_build_cmd",
        "test_build_output",
        "test_build_profiles",
        "test_build_names",
        "test_real_models",
        "test_int8_search",
        "test_host",
        "test_api",
        "test_torch_source",
        "test_mlflow_source",
        "test_sklearn_source",
        "test_pmml_source",
        "test_tensorrt_cache",
        "test_passes",
        "test_selftest",
        "test_bundle_cmd",
        # real processes, shells, the package index
        "test_build_signals",
        "test_conventions",
        "test_cli_conventions",
        "test_agent_log",
        "test_packaging",
        "test_jsondepth",
        "test_container",
        "test_power_cut",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = Path(str(item.fspath)).stem
        marks = set()
        if BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            marks.add("broker")
        if module in TENSORFLOW_MODULES:
            marks.add("tensorflow")
        if module in SERVER_MODULES:
            marks.add("servers")
        if module.endswith("_fuzz"):  # seeded property tests, 200 examples each
            marks.add("fuzz")
        if marks or module in SLOW_MODULES:
            marks.add("slow")
        for mark in sorted(marks):
            item.add_marker(mark)


REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "digits"
TRANSFORMER = REPO / "examples" / "transformer"


@pytest.fixture(scope="session")
def digits() -> Path:
    return DIGITS


@pytest.fixture(scope="session")
def transformer() -> Path:
    return TRANSFORMER


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two online keys, threshold 1."""
    from edge_sdk.signing.keys import init_keys

    directory = tmp_path_factory.mktemp("keys")
    init_keys(directory, online_keys=2, threshold=1)
    return directory


@pytest.fixture(scope="session")
def signing_keys_t2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edge_sdk.signing.keys import init_keys

    directory = tmp_path_factory.mktemp("keys2")
    init_keys(directory, online_keys=2, threshold=2)
    return directory


@pytest.fixture()
def keyring(tmp_path: Path, signing_keys: Path) -> Path:
    """A private copy of ``signing_keys`` that a test may rotate or re-sign with."""
    import shutil

    copy = tmp_path / "keys"
    shutil.copytree(signing_keys, copy)
    return copy


@pytest.fixture(scope="session")
def digits_build(tmp_path_factory: pytest.TempPathFactory, signing_keys: Path) -> dict[str, object]:
    """The README's main job: digits for x86-64-vnni, signed; returns the JSON report."""
    from edge_sdk.build.pipeline import BuildRequest, build
    from edge_sdk.core.profiles import resolve_profile

    out = tmp_path_factory.mktemp("digits-out")
    result = build(
        BuildRequest(
            model=DIGITS / "model.onnx",
            profile=resolve_profile("x86-64-vnni"),
            out=out,
            calibration=DIGITS / "calibration.npz",
            validation=DIGITS / "validation.npz",
            keys=(signing_keys / "online-1.key",),
        )
    )
    return result.report


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``edge-sdk`` in-process: (exit code, stdout, stderr)."""
    from edge_sdk.cli import run

    def invoke(*argv: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


# -- MQTT: a real Mosquitto per test (testing/mosquitto.py) ------------------------------------


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A plain, anonymous Mosquitto on its own loopback port."""
    from testing.mosquitto import Broker

    with Broker(tmp_path / "broker") as started:
        yield started


@pytest.fixture()
def tls_broker(tmp_path: Path) -> Iterator[Broker]:
    """A mutual-TLS Mosquitto: clients need a certificate from its CA; the CN is the username."""
    from testing.mosquitto import Broker

    with Broker(tmp_path / "tls-broker", tls=True) as started:
        yield started


@pytest.fixture()
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Start brokers on demand, ``make(tls=False, acl=None)``; all are stopped at teardown."""
    from testing.mosquitto import Broker

    brokers: list[Broker] = []

    def make(tls: bool = False, acl: str | None = None) -> Broker:
        started = Broker(tmp_path / f"broker-{len(brokers)}", tls, acl=acl)
        brokers.append(started)
        started.start()
        return started

    yield make
    for started in reversed(brokers):
        started.close()


@pytest.fixture()
def fleet_broker(tmp_path: Path, keyring: Path) -> Iterator[FleetBroker]:
    """A broker made by ``edge-sdk broker init`` and running its config (mutual TLS, the
    generated ACL); ``fleet_broker.enroll("dev-1")`` runs ``fleet enroll`` and returns the
    device's agent.toml, trusting ``keyring``'s root.json."""
    from testing.fleet_broker import FleetBroker

    with FleetBroker(tmp_path / "fleet-broker", trust_root=keyring / "root.json") as started:
        yield started

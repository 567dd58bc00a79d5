"""``edge-sdk build``: source model + profile -> measured candidates -> one signed bundle.

The I/O shell around the pure pieces: conversion passes (``converters``), the candidate decision
(``search``), fidelity maths (``fidelity``), bundle format (``bundle``) and signing (``trust``).
Everything is made in a temporary directory; only the finished bundle is renamed into ``--out``.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from converters import PassContext, get_pass
from converters.recipes import ARTIFACT_SUFFIX, PREPARE, RECIPES
from converters.sensitivity import (
    WEIGHTED_OPS,
    float_op_nodes,
    head_nodes,
    rank_sensitive_nodes,
)
from edge_sdk import runtime
from edge_sdk.build.data import Dataset, check_dataset, load_data, resolve_specs, synthetic
from edge_sdk.build.onnx_model import load_source
from edge_sdk.build.search import COSINE_NOISE, Candidate, choose, int8_judge, within_budget
from edge_sdk.build.sources.keras import is_tensorflow_source
from edge_sdk.core import bundle as bundle_format
from edge_sdk.core import golden
from edge_sdk.core.fidelity import accuracy as top1_accuracy
from edge_sdk.core.fidelity import compare
from edge_sdk.core.host import HostDescription, selecting, stand_in_line, verdict_for
from edge_sdk.core.host import detect as detect_host
from edge_sdk.core.interrupt import on_abrupt_exit
from edge_sdk.core.profiles import SATURATING_KERNELS, HardwareProfile
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.errors import EdgeSdkError, InputError, OutputError, UnsupportedError
from edge_sdk.runtime.ort import graph_level_for, host_threads, open_session
from edge_sdk.runtime.timing import LatencyStats, measure_interleaved

if TYPE_CHECKING:
    from edge_sdk.build.device_measure import MeasureOn

Progress = Callable[[str], None]
SYNTHETIC_SAMPLES = 64
GOLDEN_VECTORS = 8
SIGNATURE_LIFETIME = timedelta(days=365)
# Versions travel as JSON numbers; past 2**53 - 1 a JSON reader may round them.
MAX_VERSION = 2**53 - 1
MAX_LABEL = 64


@dataclass(frozen=True)
class BuildRequest:
    model: Path
    profile: HardwareProfile
    out: Path
    calibration: Path | None = None
    validation: Path | None = None
    name: str | None = None
    version: str | None = None
    label: str | None = None
    keys: tuple[Path, ...] = ()
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    force: bool = False
    # Seconds of interleaved timing per model; the search is only as good as its measurements.
    timing_seconds: float = 1.0
    # This host's int8 arithmetic (profiles.INT8_KERNELS); None reads it from /proc/cpuinfo.
    # Tests set it to stand for a host they are not.
    host_kernels: str | None = None
    # This host's CPU and providers (edge_sdk.core.host); None detects them. Tests inject others.
    host: HostDescription | None = None
    # --measure-on DEVICE: candidates measured by a device of the fleet, chosen by its figures.
    measure_on: MeasureOn | None = None
    # A source converted to ONNX first (edge_sdk.build.sources): what the report names as the
    # source,
    # and what it says about the conversion.
    source_label: str | None = None
    source_notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildResult:
    bundle_path: Path
    report: dict[str, Any]


def _check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create --out {out}: {e.strerror}") from e
    if not out.is_dir() or not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out} is not a writable directory")


@dataclass(frozen=True)
class _Identity:
    """What the bundle will be called, decided (and validated) before any work starts."""

    name: str
    version: int
    label: str
    target: Path


def _identity(request: BuildRequest) -> _Identity:
    """--name, --version and --label checked as given: an empty value is a mistake, not "use the
    default"; version 0 (or 0.0.0) is below every device's floor."""
    name = bundle_format.check_name(request.model.stem if request.name is None else request.name)
    if request.version is None:
        version = _next_version(request.out, name)
        label = f"v{bundle_format.format_version(version)}"
    else:
        if not request.version.isascii() or len(request.version) > 32:
            # "²".isdigit() is true and int() of 5,000 digits raises: stop both here.
            raise InputError(
                f"--version {request.version[:40]!r} must be a positive integer (e.g. 7) or "
                "MAJOR.MINOR.PATCH (e.g. 1.2.0)"
            )
        version, label = bundle_format.parse_version(request.version)
        if not 0 < version <= MAX_VERSION:
            raise InputError(
                f"--version {request.version!r} must be above 0 and at most {MAX_VERSION} "
                "(e.g. 7 or 1.2.0)"
            )
    if request.label is not None:
        if not request.label.strip() or len(request.label) > MAX_LABEL:
            raise InputError(
                f"--label {request.label!r} must be 1-{MAX_LABEL} characters, not blank; "
                "leave it out to use the version"
            )
        if not request.label.isprintable():
            raise InputError(f"--label {request.label!r} must hold printable characters only")
        label = request.label
    # Named as the user wrote the version (digits-v1.2.0-...), not by the integer devices compare.
    shown = bundle_format.format_version(version)
    target = request.out / f"{name}-v{shown}-{request.profile.id}{bundle_format.SUFFIX}"
    return _Identity(name, version, label, target)


@contextlib.contextmanager
def _claim(target: Path) -> Iterator[None]:
    """Hold ``target`` for this build: a second build of the same bundle into the same --out
    fails at once instead of both succeeding and one replacing the other. The lock is an
    advisory ``flock`` on a hidden file beside it, released by the kernel if we die."""
    lock = target.with_name(f".{target.name}.lock")
    busy = OutputError(
        f"another build is writing {target} right now; wait for it, or pass another --version"
    )
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise OutputError(
            f"cannot write to {target.parent}: {e.strerror}; choose a writable --out"
        ) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the build that held it finished and removed it while we waited
            raise busy
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)  # still holding the lock: no one else can be inside
    finally:
        os.close(fd)


@contextlib.contextmanager
def _scratch_inside(workdir: Path, target: Path) -> Iterator[None]:
    """Every temporary file or folder made during the build (ours, onnxruntime's optimizer and
    calibrators') goes inside ``workdir``, so removing it leaves nothing behind; and if a signal
    forces an exit without unwinding (see ``edge_sdk.core.interrupt``), it is removed then too, with
    the lock and any half-written bundle."""
    scratch = workdir / "tmp"
    scratch.mkdir()

    def remove() -> None:
        shutil.rmtree(workdir, ignore_errors=True)
        for partial in target.parent.glob(f".{target.name}.*.tmp"):
            partial.unlink(missing_ok=True)
        target.with_name(f".{target.name}.lock").unlink(missing_ok=True)

    previous = tempfile.tempdir
    tempfile.tempdir = str(scratch)
    try:
        with on_abrupt_exit(remove):
            yield
    finally:
        tempfile.tempdir = previous


def _next_version(out: Path, name: str) -> int:
    versions = []
    for path in out.glob(f"{name}-v*-*{bundle_format.SUFFIX}"):
        number = path.name[len(name) + 2 :].split("-", 1)[0]
        with contextlib.suppress(InputError):  # not a version: someone else's file
            versions.append(bundle_format.parse_version(number)[0])
    return max(versions, default=0) + 1


def _datasets(
    request: BuildRequest, specs: Sequence[TensorSpec], progress: Progress
) -> tuple[tuple[TensorSpec, ...], Dataset, Dataset, list[str]]:
    """Load, check and pair calibration and validation data; say what stood in for absent data."""
    profile = request.profile
    calib = load_data(request.calibration, specs, profile.image) if request.calibration else None
    valid = load_data(request.validation, specs, profile.image) if request.validation else None
    resolved = resolve_specs(specs, calib or valid, request.input_shapes)
    notes: list[str] = []
    for dataset in (calib, valid):
        if dataset is not None:
            check_dataset(dataset, resolved)
            notes.extend(dataset.notes)
    if calib is None and valid is None:
        progress("no data given: using synthetic samples")
        calib = synthetic(resolved, SYNTHETIC_SAMPLES, seed=0)
        valid = synthetic(resolved, SYNTHETIC_SAMPLES, seed=1)
        notes.extend(calib.notes)
    elif calib is None:
        assert valid is not None
        calib = valid
        notes.append(
            "no --calibration: calibrated on the validation data, so fidelity is optimistic"
        )
    elif valid is None:
        valid = calib
        notes.append(
            "no --validation: fidelity measured on the calibration data, so it is optimistic"
        )
    return resolved, calib, valid, notes


class _Workshop:
    """Builds and measures candidates inside one temporary directory."""

    def __init__(
        self,
        request: BuildRequest,
        workdir: Path,
        specs: tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]],
        calib: Dataset,
        valid: Dataset,
        progress: Progress,
    ) -> None:
        self.request = request
        self.specs, self.output_specs = specs
        self.profile = request.profile
        self.workdir = workdir
        self.calib = calib
        self.valid = valid
        self.progress = progress
        self.threads = host_threads(self.profile.threads)
        self.runtime = self.profile.runtime
        # ONNX recipes start from an optimised .onnx; TFLite ones from onnx2tf's SavedModel.
        self.prepared = workdir / ("prepared.onnx" if self.runtime == "onnx" else "saved_model")
        self.paths: dict[str, Path] = {}
        self.models: dict[str, runtime.Model] = {}
        self.settings: dict[str, dict[str, Any]] = {}
        # One line per conversion route tried (onnx2tf's fallbacks), for the report.
        self.routes: list[str] = []
        host = request.host or detect_host()
        self.host = host.with_int8_kernels(request.host_kernels) if request.host_kernels else host
        self.host_kernels = self.host.int8_kernels
        self.judge = int8_judge(self.profile.int8_kernels, self.host_kernels)

    def run_passes(
        self, source: Path, names: Sequence[str], target: Path, options: Mapping[str, Any]
    ) -> None:
        context = PassContext(
            self.profile, self.workdir, self.calib.inputs, options, routes=self.routes
        )
        current = source
        for step, name in enumerate(names):
            last = step == len(names) - 1
            out = target if last else self.workdir / f"{target.stem}.{name}{_suffix(name)}"
            get_pass(name)(current, out, context)
            current = out
        if not names:
            target.write_bytes(source.read_bytes())

    def candidate(
        self,
        name: str,
        precision: str,
        recipe: Mapping[str, Any],
        reference: Sequence[np.ndarray],
    ) -> Candidate:
        self.progress(f"building candidate {name}")
        path = self.workdir / f"{name}{ARTIFACT_SUFFIX[self.runtime]}"
        settings = runtime_settings(self.profile, precision)
        try:
            self.run_passes(self.prepared, RECIPES[self.runtime][precision], path, recipe)
            model = runtime.load(
                path,
                runtime=self.runtime,
                threads=self.threads,
                inputs=self.specs,
                outputs=self.output_specs,
                settings=settings,
            )
            outputs = runtime.evaluate(model, self.valid.inputs)
            exact = None
            # The exact simulation matters only where it judges: where the host computes as the
            # target does, its fused figure is the target's, and a second pass would double
            # the search's evaluation time.
            if (
                precision == "int8_static"
                and self.runtime == "onnx"
                and self.judge == "exact"
                and recipe.get("quant_format") != "qoperator"
            ):
                exact = runtime.evaluate(
                    runtime.load(
                        path,
                        runtime="onnx",
                        threads=self.threads,
                        inputs=self.specs,
                        outputs=self.output_specs,
                        settings={**settings, "graph_optimization_level": "disabled"},
                    ),
                    self.valid.inputs,
                )
        except EdgeSdkError as e:
            return Candidate(name, precision, dict(recipe), error=str(e))
        self.paths[name] = path
        self.models[name] = model
        self.settings[name] = settings
        labels = self.valid.labels
        host = compare(reference, outputs)
        if exact is None:
            int8 = precision == "int8_static" and self.runtime == "onnx"
            return Candidate(
                name,
                precision,
                dict(recipe),
                artifact_bytes=path.stat().st_size,
                fidelity=host,
                accuracy=top1_accuracy(outputs, labels) if labels is not None else None,
                host_fidelity=host if int8 else None,
                judged_by="host" if int8 else None,
            )
        return Candidate(
            name,
            precision,
            dict(recipe),
            artifact_bytes=path.stat().st_size,
            fidelity=compare(reference, exact),
            accuracy=top1_accuracy(exact, labels) if labels is not None else None,
            exact_fidelity=compare(reference, exact),
            host_fidelity=host,
            judged_by="exact",
        )

    def int8_static(
        self, reference: Sequence[np.ndarray], source_accuracy: float | None
    ) -> list[Candidate]:
        """The int8 search, cheapest first, stopping at the first step inside the budget:
        1. the profile's calibration methods (with reduce_range first on a saturating target);
        2. op types int8 hurts (Softmax, sigmoids, hard-swish, Resize), the first convolution
           and the output head kept in float; then depthwise convolutions too;
        3. the layers that measure most damaging (exact QDQ simulation) kept in float, each
           step a superset of the last, stopping when keeping more stops helping;
        4. on a CPU target judged by this host's kernels, the QOperator form of the winner.
        """
        budget = self.profile.accuracy_budget
        q = self.profile.quantization
        tried: list[Candidate] = []

        def fits(c: Candidate) -> bool:
            return within_budget(c, source_accuracy, budget)

        base: dict[str, Any] = {}
        if self.profile.int8_kernels in SATURATING_KERNELS and not q.reduce_range:
            base["reduce_range"] = True
        for method in q.calibration_methods:
            c = self.candidate(
                f"int8_static-{method}",
                "int8_static",
                {**base, "calibration_method": method},
                reference,
            )
            tried.append(c)
            if fits(c):
                return self._qoperator(tried, reference)
        built = [c for c in tried if c.fidelity is not None]
        if not built:
            return tried
        best = max(built, key=_cosine)
        graph = self.prepared
        steps: list[tuple[str, list[str], str]] = []
        keep = float_op_nodes(graph, q.float_op_types) + head_nodes(graph)
        steps.append(("int8_floatops", keep, "op types int8 hurts, first conv and output head"))
        keep = keep + [n for n in float_op_nodes(graph, ("depthwise",)) if n not in keep]
        steps.append(("int8_floatops_dw", keep, "and depthwise convolutions"))
        # A candidate with every weighted layer in float is the float model with extra steps.
        weighted = set(float_op_nodes(graph, tuple(WEIGHTED_OPS)))
        previous: list[str] = []
        for name, excluded, why in steps:
            if excluded == previous or weighted <= set(excluded):
                continue
            previous = excluded
            c = self._keep_in_float(name, best, excluded, why, reference)
            tried.append(c)
            if fits(c):
                return self._qoperator(tried, reference)
            if c.fidelity is not None and _cosine(c) > _cosine(best):
                best = c
        if q.mixed_precision_steps <= 0:
            return tried
        self.progress("ranking layers by int8 damage (exact QDQ simulation)")
        plain = max(built, key=_cosine)
        ranked = rank_sensitive_nodes(
            self.prepared, self.paths[plain.name], self.calib.inputs, self.workdir
        )
        floor = list(best.recipe.get("nodes_to_exclude", ()))
        order = [node for node, _ in ranked if node not in floor]
        last = best
        for step in range(q.mixed_precision_steps):
            count = min(2**step, len(order))
            excluded = floor + order[:count]
            if count == 0 or weighted <= set(excluded):
                break
            c = self._keep_in_float(
                f"int8_mixed-{count}", best, excluded, f"{count} most damaging layers", reference
            )
            tried.append(c)
            if fits(c) or count == len(order):
                break
            if c.fidelity is not None and _cosine(c) < _cosine(last) - COSINE_NOISE:
                # Keeping more in float made it worse: the ranking is not finding the damage;
                # more steps along it would only cost time.
                break
            last = c if c.fidelity is not None else last
        return self._qoperator(tried, reference)

    def _keep_in_float(
        self,
        name: str,
        base: Candidate,
        excluded: Sequence[str],
        why: str,
        reference: Sequence[np.ndarray],
    ) -> Candidate:
        recipe = {**base.recipe, "nodes_to_exclude": list(excluded)}
        c = self.candidate(name, "int8_static", recipe, reference)
        more = f" (+{len(excluded) - 8} more)" if len(excluded) > 8 else ""
        shown = ", ".join(excluded[:8]) + more
        return replace(c, notes=(f"kept in float ({why}): {shown or 'none'}",))

    def _qoperator(
        self, tried: list[Candidate], reference: Sequence[np.ndarray]
    ) -> list[Candidate]:
        """Where the target is this host's CPU class, the QOperator form of the best QDQ
        candidate too: the search times both forms rather than assume which is faster."""
        q = self.profile.quantization
        if "qoperator" not in q.formats or self.judge != "host":
            return tried
        built = [c for c in tried if c.fidelity is not None]
        if not built:
            return tried
        best = max(built, key=_cosine)
        tried.append(
            self.candidate(
                f"{best.name}-qop",
                "int8_static",
                {**best.recipe, "quant_format": "qoperator"},
                reference,
            )
        )
        return tried


def _cosine(c: Candidate) -> float:
    return c.fidelity.cosine if c.fidelity else 0.0


def runtime_settings(profile: HardwareProfile, precision: str) -> dict[str, Any]:
    """How the device should open the artifact: providers or delegates in order, threads,
    and, for onnxruntime, the graph optimization level this precision is safe at."""
    if profile.runtime == "onnx":
        settings: dict[str, Any] = {
            "providers": list(profile.providers),
            "threads": profile.threads,
            "graph_optimization_level": graph_level_for(precision),
        }
        if profile.tensorrt_cache:  # the device keeps it in the version's directory
            settings["tensorrt_cache"] = True
        return settings
    return {"delegates": list(profile.delegates), "threads": profile.threads}


def _suffix(pass_name: str) -> str:
    # onnx2tf writes a SavedModel directory; every other intermediate is an .onnx file.
    return "" if pass_name == "onnx2tf" else ".onnx"


def _require_tflite_toolchain(profile: HardwareProfile) -> None:
    import importlib.util

    missing = [m for m in ("tensorflow", "onnx2tf") if importlib.util.find_spec(m) is None]
    if missing:
        raise UnsupportedError(
            f"profile {profile.id} builds TFLite, which needs {' and '.join(missing)}: install "
            "the tflite extra (see README, 'TFLite targets')"
        )


def _sign(bundle: bundle_format.Bundle, keys: Sequence[Path]) -> bytes | None:
    if not keys:
        return None
    from edge_sdk.core.trust import sign_files
    from edge_sdk.signing.keys import load_signer

    return sign_files(
        bundle.signed_files(),
        [load_signer(k) for k in keys],
        expires=datetime.now(UTC) + SIGNATURE_LIFETIME,
        custom=bundle.manifest.identity(),
    )


def build(request: BuildRequest, progress: Progress = lambda _: None) -> BuildResult:
    from edge_sdk.build import sources

    if sources.kind_of(request.model) is not None:
        # MLflow URIs, scikit-learn pickles and PMML files become ONNX, checked, first.
        progress(f"converting {request.model} to ONNX")
        with sources.converted_request(request) as converted:
            return build(converted, progress)
    started = time.perf_counter()
    profile = request.profile
    if profile.runtime == "tflite":
        _require_tflite_toolchain(profile)
    _check_out_dir(request.out)
    identity = _identity(request)
    if request.keys:
        from edge_sdk.signing.keys import load_signer

        for key in request.keys:
            load_signer(key)  # a bad key file fails now, not after minutes of work
    tensorflow_source = is_tensorflow_source(request.model)
    if tensorflow_source and profile.runtime != "tflite":
        raise UnsupportedError(
            f"{request.model} is a TensorFlow model, which builds for TFLite profiles; export it "
            f"to ONNX (tf2onnx) to build for {profile.id}"
        )
    # onnxruntime's calibrators and TensorFlow print progress to stdout, which belongs to our
    # report (--json); the temporary directory holds every intermediate, so nothing half-made
    # can reach --out.
    with (
        _claim(identity.target),
        tempfile.TemporaryDirectory(prefix="edge-sdk-build-") as tmp,
        _scratch_inside(Path(tmp), identity.target),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        if identity.target.exists() and not request.force:
            raise OutputError(
                f"{identity.target} already exists; pass a higher --version or --force"
            )
        return _build_in(request, identity, Path(tmp), tensorflow_source, started, progress)


def _build_in(
    request: BuildRequest,
    identity: _Identity,
    workdir: Path,
    tensorflow_source: bool,
    started: float,
    progress: Progress,
) -> BuildResult:
    profile = request.profile
    if tensorflow_source:
        from edge_sdk.build.sources.keras import load_tensorflow_source

        source_model: runtime.Model
        source_model, source = load_tensorflow_source(request.model, workdir / "saved_model")
    else:
        _, source = load_source(request.model)
    name, version, label, target = (
        identity.name,
        identity.version,
        identity.label,
        identity.target,
    )
    specs, calib, valid, notes = _datasets(request, source.inputs, progress)
    notes = [*request.source_notes, *notes]

    shop = _Workshop(request, workdir, (specs, source.outputs), calib, valid, progress)
    if not tensorflow_source:
        # TensorFlow sources were written as the SavedModel the TFLite recipes start from.
        progress("preparing the graph (opset, optimisation, shape inference)")
        shop.run_passes(request.model, PREPARE[profile.runtime], shop.prepared, {})
        source_model = runtime.OnnxModel(open_session(request.model, threads=shop.threads))
    progress("running the source model")
    reference = runtime.evaluate(source_model, valid.inputs)
    source_accuracy = top1_accuracy(reference, valid.labels) if valid.labels is not None else None

    candidates: list[Candidate] = []
    for precision in profile.precisions:
        if precision == "int8_static" and profile.runtime == "onnx":
            candidates.extend(shop.int8_static(reference, source_accuracy))
        else:
            candidates.append(shop.candidate(precision, precision, {}, reference))

    progress("timing the source model and every candidate (interleaved)")
    sample = valid.sample(0)
    models: dict[str, runtime.Model] = {"source": source_model, **shop.models}
    timings = measure_interleaved(
        {n: functools.partial(m.run, sample) for n, m in models.items()},
        seconds=request.timing_seconds,
    )
    candidates = [replace(c, latency=timings.get(c.name)) for c in candidates]
    # Host speed chooses only where this host stands in for the target (edge_sdk.core.host).
    verdict = verdict_for(profile, shop.host)
    answer = None
    source_latency = timings["source"]
    if request.measure_on is not None:
        from edge_sdk.build.device_measure import choose_on_device

        few = valid.take(GOLDEN_VECTORS)
        expected = runtime.evaluate(source_model, few.inputs)
        send = (
            {n: (shop.paths[n], shop.settings[n]) for n in shop.paths},
            request.model,
            (specs, source.outputs),
            golden.pack(
                dict(few.inputs), {o.name: v for o, v in zip(source.outputs, expected, strict=True)}
            ),
        )
        candidates, on_device, answer = choose_on_device(
            request.measure_on, profile, candidates, send, source_accuracy, progress
        )
        source_latency = on_device or source_latency
    else:
        candidates = choose(
            candidates, selecting(profile, verdict), source_latency, source_accuracy
        )
    chosen = next(c for c in candidates if c.chosen)
    artifact = shop.paths[chosen.name].read_bytes()

    progress("recording golden vectors")
    vectors = valid.take(GOLDEN_VECTORS)
    outputs = runtime.evaluate(shop.models[chosen.name], vectors.inputs)
    chosen_model = shop.models[chosen.name]
    artifact_tensors = (
        chosen_model.tensors() if isinstance(chosen_model, runtime.TFLiteModel) else {}
    )
    atol, rtol = golden.tolerance_for(chosen.precision, outputs)
    golden_bytes = golden.pack(
        dict(vectors.inputs), {o.name: v for o, v in zip(source.outputs, outputs, strict=True)}
    )

    report = _report(
        request,
        source.size_bytes,
        specs,
        calib,
        valid,
        notes,
        candidates,
        chosen,
        source_latency,
        source_accuracy,
    )
    report["routes"] = list(shop.routes)
    report["host"] = shop.host.to_json()
    report["timed_on_stand_in"] = verdict.ok
    report["selection"] = selecting(profile, verdict).selection
    report["stand_in_line"] = None if verdict.ok else stand_in_line(profile.id, verdict)
    report["chosen_on"] = "host timings" if report["selection"] == "fastest" else "profile order"
    if answer is not None:
        from edge_sdk.build.device_measure import results_json, side_by_side

        side_by_side(report["candidates"], timings, answer)
        report["device"] = results_json(answer)  # the manifest records what the device measured
        report["host_source_latency_ms"] = timings["source"].to_json()
        report["chosen_on"] = f"device {answer.device}"
        report["selection"] = "fastest"
    report["int8_arithmetic"] = {
        "target": profile.int8_kernels,
        "host": shop.host_kernels,
        "judged_by": shop.judge,
    }
    manifest = bundle_format.Manifest(
        name=name,
        version=version,
        label=label,
        profile=profile.id,
        runtime=profile.runtime,
        precision=chosen.precision,
        artifact=bundle_format.ARTIFACT_NAMES[profile.runtime],
        artifact_sha256=bundle_format.sha256(artifact),
        artifact_bytes=len(artifact),
        inputs=specs,
        outputs=source.outputs,
        golden=bundle_format.GoldenInfo(len(vectors), atol, rtol),
        runtime_settings=shop.settings[chosen.name],
        artifact_tensors=artifact_tensors,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        report=report,
    )
    manifest_bytes = manifest.to_bytes()
    unsigned = bundle_format.Bundle(manifest, artifact, golden_bytes, None, manifest_bytes)
    signatures = _sign(unsigned, request.keys)
    progress("writing the bundle")
    bundle_format.write_bundle(
        target, unsigned.with_signatures(signatures) if signatures else unsigned
    )
    report = {
        **report,
        "bundle": str(target),
        "name": name,
        "version": version,
        "label": label,
        "artifact_sha256": manifest.artifact_sha256,
        "signed": signatures is not None,
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    return BuildResult(target, report)


def _report(
    request: BuildRequest,
    source_bytes: int,
    specs: Sequence[TensorSpec],
    calib: Dataset,
    valid: Dataset,
    notes: Sequence[str],
    candidates: Sequence[Candidate],
    chosen: Candidate,
    source_latency: LatencyStats,
    source_accuracy: float | None,
) -> dict[str, Any]:
    profile = request.profile
    assert chosen.latency is not None and chosen.fidelity is not None
    return {
        "profile": profile.id,
        "runtime": profile.runtime,
        "precision": chosen.precision,
        "recipe": dict(chosen.recipe),
        "source": request.source_label or str(request.model),
        "source_bytes": source_bytes,
        "artifact_bytes": chosen.artifact_bytes,
        "latency_ms": chosen.latency.to_json(),
        "source_latency_ms": source_latency.to_json(),
        "speedup": round(source_latency.p50_ms / chosen.latency.p50_ms, 3),
        "fidelity": chosen.fidelity.to_json(),
        "accuracy": chosen.accuracy,
        "source_accuracy": source_accuracy,
        "accuracy_budget": {
            "max_top1_disagreement": profile.accuracy_budget.max_top1_disagreement,
            "min_cosine": profile.accuracy_budget.min_cosine,
            "max_accuracy_drop": profile.accuracy_budget.max_accuracy_drop,
        },
        "selection": profile.selection,
        "host_threads": host_threads(profile.threads),
        "inputs": [s.to_json() for s in specs],
        "calibration": {
            "source": calib.source,
            "samples": len(calib),
            "synthetic": calib.synthetic,
        },
        "validation": {
            "source": valid.source,
            "samples": len(valid),
            "synthetic": valid.synthetic,
            "labels": valid.labels is not None,
        },
        "notes": list(notes),
        "candidates": [c.to_json() | {"notes": list(c.notes)} for c in candidates],
    }

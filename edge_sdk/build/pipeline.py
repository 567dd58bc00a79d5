"""``edge-sdk build``: source model + profile -> measured candidates -> one signed bundle.

The I/O shell around the pure pieces. This module takes the request, loads and pairs the data
(``edge_sdk.build.data``) and runs the stages in order:

    output.py       the bundle's name, version and file; the claim on it; the scratch directory
    candidates.py   each candidate converted (``converters``) and measured; the int8 search
    search.py       which candidate wins, on the timings taken here (interleaved)
    report.py       the report document
    packing.py      the bundle packed (``edge_sdk.core.bundle``), signed and written

Everything is made in a temporary directory; only the finished bundle is renamed into ``--out``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from converters.recipes import PREPARE
from edge_sdk import runtime
from edge_sdk.build.candidates import Workshop
from edge_sdk.build.data import Dataset, check_dataset, load_data, resolve_specs, synthetic
from edge_sdk.build.onnx_model import load_source
from edge_sdk.build.output import (
    BundleIdentity,
    bundle_identity,
    check_out_dir,
    claim,
    scratch_inside,
)
from edge_sdk.build.packing import write_signed
from edge_sdk.build.report import build_report, record_where_timed
from edge_sdk.build.search import Candidate, choose
from edge_sdk.build.sources.keras import is_tensorflow_source
from edge_sdk.core import golden
from edge_sdk.core.bundle import ARTIFACT_NAMES, GoldenInfo, Manifest, sha256
from edge_sdk.core.fidelity import FIRST_OUTPUT_KINDS, FirstOutput, is_class_scores
from edge_sdk.core.fidelity import accuracy as top1_accuracy
from edge_sdk.core.host import HostDescription, selecting, verdict_for
from edge_sdk.core.profiles import HardwareProfile
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.core.text import one_line
from edge_sdk.errors import EdgeSdkError, InputError, OutputError, UnsupportedError
from edge_sdk.runtime.ort import open_session
from edge_sdk.runtime.timing import measure_interleaved

if TYPE_CHECKING:
    from edge_sdk.build.device_measure import MeasureOn

Progress = Callable[[str], None]
SYNTHETIC_SAMPLES = 64
GOLDEN_VECTORS = 8


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
    # --first-output: whether the first output is judged by top-1 too (core.fidelity).
    first_output: FirstOutput = "auto"

    def __post_init__(self) -> None:
        if self.first_output not in FIRST_OUTPUT_KINDS:
            raise InputError(
                f"first output {self.first_output!r} is not one of {', '.join(FIRST_OUTPUT_KINDS)}"
            )


@dataclass(frozen=True)
class BuildResult:
    bundle_path: Path
    report: dict[str, Any]


def _check_first_output(
    request: BuildRequest, first: Any, spec: TensorSpec, valid: Dataset
) -> None:
    """A declared --first-output that the model or the data contradicts is one line."""
    if request.first_output == "class-scores" and not is_class_scores(first):
        raise InputError(
            f"--first-output class-scores: the first output {spec.name!r} is "
            f"{first.dtype}{list(first.shape)}, not [N, K] float class scores; pass "
            "--first-output values"
        )
    if request.first_output == "values" and valid.labels is not None:
        raise InputError(
            f"--first-output values, but {valid.source} has 'labels', which only class scores "
            "can be scored against; drop the labels or pass --first-output class-scores"
        )


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


def _require_tflite_toolchain(profile: HardwareProfile) -> None:
    import importlib.util

    missing = [m for m in ("tensorflow", "onnx2tf") if importlib.util.find_spec(m) is None]
    if missing:
        raise UnsupportedError(
            f"profile {profile.id} builds TFLite, which needs {' and '.join(missing)}: install "
            "the tflite extra (see README, 'TFLite targets')"
        )


def _prepare(shop: Workshop, model: Path, progress: Progress, *, fallible: bool) -> str | None:
    """The shared preparation of a runtime's recipes (opset, optimisation; onnx2tf for TFLite).
    Where the build has another runtime to try (``fallible``), a failure is this route's one
    line, returned, and the build goes on with the other; otherwise it ends the build."""
    progress(f"preparing the graph for {shop.runtime} (opset, optimisation, shape inference)")
    try:
        shop.run_passes(model, PREPARE[shop.runtime], shop.prepared, {})
    except EdgeSdkError as e:
        if not fallible:
            raise
        return one_line(str(e))
    return None


def _second_runtime(
    shop: Workshop,
    request: BuildRequest,
    reference: Sequence[Any],
    source_accuracy: float | None,
    progress: Progress,
) -> list[Candidate]:
    """The profile's second runtime's candidates, built in their own folder, measured against
    the same reference and named ``<runtime>:<candidate>``."""
    second = request.profile.on_second_runtime()
    folder = shop.workdir / f"second-{second.runtime}"
    folder.mkdir()
    other = Workshop(
        replace(request, profile=second),
        folder,
        (shop.specs, shop.output_specs),
        shop.calib,
        shop.valid,
        progress,
    )
    failed = _prepare(other, request.model, progress, fallible=True)
    if failed is not None:
        other.routes.append(f"{second.runtime} (second runtime): failed: {failed}")
        found = other.failed_all(failed)
    else:
        found = other.all_candidates(reference, source_accuracy)
        built = sum(c.fidelity is not None for c in found)
        other.routes.append(
            f"{second.runtime} (second runtime): {built} of {len(found)} candidates built"
        )
    return shop.adopt(other, f"{second.runtime}:", found)


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
    check_out_dir(request.out)
    identity = bundle_identity(request)
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
        claim(identity.target),
        tempfile.TemporaryDirectory(prefix="edge-sdk-build-") as tmp,
        scratch_inside(Path(tmp), identity.target),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        if identity.target.exists() and not request.force:
            raise OutputError(
                f"{identity.target} already exists; pass a higher --version or --force"
            )
        return _build_in(request, identity, Path(tmp), tensorflow_source, started, progress)


def _build_in(
    request: BuildRequest,
    identity: BundleIdentity,
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

    shop = Workshop(request, workdir, (specs, source.outputs), calib, valid, progress)
    prepared: str | None = None  # why the profile's own runtime could not start, if it could not
    if not tensorflow_source:
        # TensorFlow sources were written as the SavedModel the TFLite recipes start from.
        source_model = runtime.OnnxModel(open_session(request.model, threads=shop.threads))
        prepared = _prepare(
            shop, request.model, progress, fallible=profile.second_runtime is not None
        )
    progress("running the source model")
    reference = runtime.evaluate(source_model, valid.inputs)
    _check_first_output(request, reference[0], source.outputs[0], valid)
    source_accuracy = (
        top1_accuracy(reference, valid.labels, request.first_output)
        if valid.labels is not None
        else None
    )

    if prepared is None:
        candidates = shop.all_candidates(reference, source_accuracy)
    else:
        shop.routes.append(f"{profile.runtime}: failed: {prepared}")
        candidates = shop.failed_all(prepared)
    if profile.second_runtime is not None:
        if tensorflow_source:
            notes.append(
                f"a TensorFlow source builds for {profile.runtime} only: the profile's second "
                f"runtime ({profile.second_runtime.runtime}) needs an ONNX source"
            )
        else:
            candidates += _second_runtime(shop, request, reference, source_accuracy, progress)

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
    chosen_runtime = chosen.runtime or profile.runtime
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

    report = build_report(
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
        [o.name for o in source.outputs],
    )
    record_where_timed(report, shop, verdict, timings, answer)
    manifest = Manifest(
        name=name,
        version=version,
        label=label,
        profile=profile.id,
        runtime=chosen_runtime,
        precision=chosen.precision,
        artifact=ARTIFACT_NAMES[chosen_runtime],
        artifact_sha256=sha256(artifact),
        artifact_bytes=len(artifact),
        inputs=specs,
        outputs=source.outputs,
        golden=GoldenInfo(len(vectors), atol, rtol),
        runtime_settings=shop.settings[chosen.name],
        artifact_tensors=artifact_tensors,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        report=report,
    )
    signed = write_signed(target, manifest, artifact, golden_bytes, request.keys, progress)
    report = {
        **report,
        "bundle": str(target),
        "name": name,
        "version": version,
        "label": label,
        "artifact_sha256": manifest.artifact_sha256,
        "signed": signed,
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    return BuildResult(target, report)

"""The candidates of a build: each one converted from the prepared source by its recipe's
passes, loaded in its runtime, and measured against the source model's outputs (fidelity and,
with labels, accuracy); and the int8 search, which tries recipes cheapest first and stops at the
first inside the profile's accuracy budget.

``Workshop`` does this inside the build's temporary directory and keeps what the later stages
need: each candidate's file, loaded model and the settings the device will open it with. Timing
and choosing happen after it (``edge_sdk.build.pipeline``, ``edge_sdk.build.search``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from converters import PassContext, get_pass
from converters.int8_applicability import Int8NotApplicable
from converters.recipes import ARTIFACT_SUFFIX, RECIPES
from converters.sensitivity import (
    WEIGHTED_OPS,
    float_op_nodes,
    head_nodes,
    rank_sensitive_nodes,
)
from edge_sdk import runtime
from edge_sdk.build.data import Dataset
from edge_sdk.build.search import (
    COSINE_NOISE,
    Candidate,
    cosine_of,
    int8_judge,
    within_budget,
)
from edge_sdk.core.fidelity import accuracy as top1_accuracy
from edge_sdk.core.fidelity import compare
from edge_sdk.core.host import detect as detect_host
from edge_sdk.core.profiles import SATURATING_KERNELS, HardwareProfile
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.errors import EdgeSdkError
from edge_sdk.runtime.ort import graph_level_for, host_threads

if TYPE_CHECKING:
    from edge_sdk.build.pipeline import BuildRequest, Progress


class Workshop:
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

    def all_candidates(
        self, reference: Sequence[np.ndarray], source_accuracy: float | None
    ) -> list[Candidate]:
        """Every precision of the profile, in its order; ONNX int8 static as the search."""
        found: list[Candidate] = []
        for precision in self.profile.precisions:
            if precision == "int8_static" and self.runtime == "onnx":
                found.extend(self.int8_static(reference, source_accuracy))
            else:
                found.append(self.candidate(precision, precision, {}, reference))
        return found

    def failed_all(self, why: str) -> list[Candidate]:
        """Every precision of the profile as a failed candidate: the route could not start."""
        return [
            Candidate(p, p, {}, runtime=self.runtime, error=why) for p in self.profile.precisions
        ]

    def adopt(self, other: Workshop, prefix: str, found: Sequence[Candidate]) -> list[Candidate]:
        """Take in another runtime's candidates (``[second_runtime]``) under names starting
        with ``prefix``, so that timing, choosing and packing see one set."""
        for name, path in other.paths.items():
            self.paths[prefix + name] = path
            self.models[prefix + name] = other.models[name]
            self.settings[prefix + name] = other.settings[name]
        self.routes.extend(other.routes)
        return [replace(c, name=prefix + c.name) for c in found]

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
        except Int8NotApplicable as e:  # nothing to quantize: skipped, not failed
            return Candidate(name, precision, dict(recipe), runtime=self.runtime, skipped=str(e))
        except EdgeSdkError as e:
            return Candidate(name, precision, dict(recipe), runtime=self.runtime, error=str(e))
        self.paths[name] = path
        self.models[name] = model
        self.settings[name] = settings
        labels = self.valid.labels
        kind = self.request.first_output
        host = compare(reference, outputs, kind)
        if exact is None:
            int8 = precision == "int8_static" and self.runtime == "onnx"
            return Candidate(
                name,
                precision,
                dict(recipe),
                runtime=self.runtime,
                artifact_bytes=path.stat().st_size,
                fidelity=host,
                accuracy=top1_accuracy(outputs, labels, kind) if labels is not None else None,
                host_fidelity=host if int8 else None,
                judged_by="host" if int8 else None,
            )
        return Candidate(
            name,
            precision,
            dict(recipe),
            runtime=self.runtime,
            artifact_bytes=path.stat().st_size,
            fidelity=compare(reference, exact, kind),
            accuracy=top1_accuracy(exact, labels, kind) if labels is not None else None,
            exact_fidelity=compare(reference, exact, kind),
            host_fidelity=host,
            judged_by="exact",
        )

    def int8_static(
        self, reference: Sequence[np.ndarray], source_accuracy: float | None
    ) -> list[Candidate]:
        """The int8 search, cheapest first, stopping at the first step inside the budget:
        1. the profile's calibration methods (with reduce_range first on a saturating target),
           the first with per-tensor weights too where the profile asks for per-channel;
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
            if c.skipped is not None:  # the same for every method: one line, not one each
                return [replace(c, name="int8_static", recipe={})]
            tried.append(c)
            if len(tried) == 1 and q.per_channel and c.fidelity is not None:
                # Per-channel weights are not always the more faithful, so both are measured
                # (PP-OCR's classifier: per-tensor 0.9998, per-channel 0.9975). The ranges are
                # calibrated once, so the twin costs one quantization and one evaluation.
                tried.append(
                    self.candidate(
                        f"{c.name}-per-tensor",
                        "int8_static",
                        {**c.recipe, "per_channel": False},
                        reference,
                    )
                )
            if any(fits(t) for t in tried):
                return self._qoperator(tried, reference)
        built = [c for c in tried if c.fidelity is not None]
        if not built:
            return tried
        best = max(built, key=cosine_of)
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
            if c.fidelity is not None and cosine_of(c) > cosine_of(best):
                best = c
        if q.mixed_precision_steps <= 0:
            return tried
        self.progress("ranking layers by int8 damage (exact QDQ simulation)")
        plain = max(built, key=cosine_of)
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
            if c.fidelity is not None and cosine_of(c) < cosine_of(last) - COSINE_NOISE:
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
        best = max(built, key=cosine_of)
        tried.append(
            self.candidate(
                f"{best.name}-qop",
                "int8_static",
                {**best.recipe, "quant_format": "qoperator"},
                reference,
            )
        )
        return tried


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

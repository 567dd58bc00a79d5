"""One way to run any artifact: ``model.run(feeds)`` for ONNX and TFLite alike.

Callers speak the source model's interface: its input names, its layout (NCHW for ONNX exports)
and float values. Each backend translates: a TFLite artifact made by onnx2tf is NHWC and may
take int8 or uint8, so its wrapper transposes and quantizes on the way in and dequantizes and
transposes back on the way out. The build measures candidates through this module and the
device self-tests through it, so both see the artifact the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_sdk.core.bundle import Bundle
from edge_sdk.core.tensors import TensorSpec
from edge_sdk.errors import BuildError, UnsupportedError

log = logging.getLogger(__name__)

# Evaluate in chunks so validation sets of any size fit in memory.
EVAL_BATCH = 64


class Model(Protocol):
    """A loaded artifact. ``run`` takes and returns the source model's tensors (float, source
    layout), samples on the first axis."""

    batch_capable: bool

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


def evaluate(model: Model, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run every sample; return one array per output with samples on the first axis."""
    count = len(next(iter(inputs.values())))
    step = EVAL_BATCH if model.batch_capable else 1
    chunks = [
        model.run({name: array[start : start + step] for name, array in inputs.items()})
        for start in range(0, count, step)
    ]
    return [np.concatenate([chunk[i] for chunk in chunks]) for i in range(len(chunks[0]))]


# --- ONNX -------------------------------------------------------------------------------------


class OnnxModel:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.batch_capable = all(
            not isinstance(i.shape[0], int) for i in session.get_inputs() if i.shape
        )

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(None, dict(feeds)))


# --- TFLite -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TFLiteTensor:
    """One artifact tensor as the interpreter sees it, and how it maps to the source's."""

    name: str  # the signature's name for it
    source: str  # the source model's tensor name
    shape: tuple[int, ...]
    dtype: str
    scale: float  # 0.0 when not quantized
    zero_point: int
    permutation: tuple[int, ...] | None  # source -> artifact axes; None when identical

    @property
    def layout(self) -> str:
        return "NHWC" if self.permutation == (0, 2, 3, 1) else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "layout": self.layout,
            "quantization": {"scale": self.scale, "zero_point": self.zero_point}
            if self.scale
            else None,
        }


NCHW_TO_NHWC = (0, 2, 3, 1)


def _permutation(source: TensorSpec, artifact_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """onnx2tf turns NCHW into NHWC; tell which by comparing shapes (batch ignored)."""
    src = source.shape
    if len(src) != 4 or len(artifact_shape) != 4:
        return None
    same = all(
        not isinstance(s, int) or s == a for s, a in zip(src[1:], artifact_shape[1:], strict=True)
    )
    nhwc = tuple(src[i] for i in NCHW_TO_NHWC)
    moved = all(
        not isinstance(s, int) or s == a for s, a in zip(nhwc[1:], artifact_shape[1:], strict=True)
    )
    if moved and not same:
        return NCHW_TO_NHWC
    return None


def _interpreter(model: bytes, threads: int) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            # tflite-runtime is the older, smaller wheel for boards LiteRT has no build for; it
            # needs numpy < 2.
            from tflite_runtime.interpreter import Interpreter
        except ImportError as e:
            raise UnsupportedError(
                "this bundle runs on TFLite and no TFLite runtime is installed here: "
                "pip install 'edgesdk-fleet[agent-tflite]' (ai-edge-litert; or tflite-runtime)"
            ) from e
        log.warning("ai-edge-litert is not installed; using tflite-runtime")
    try:
        return Interpreter(model_content=model, num_threads=threads)
    except (ValueError, RuntimeError) as e:
        raise BuildError(f"the TFLite runtime cannot load the model: {e}") from e


class TFLiteModel:
    def __init__(
        self,
        model: bytes,
        *,
        threads: int,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
    ) -> None:
        self.interpreter = _interpreter(model, threads)
        self.runner = self.interpreter.get_signature_runner()
        in_details = self.runner.get_input_details()
        out_details = self.runner.get_output_details()
        self.inputs = [
            self._tensor(name, in_details[name], spec)
            for name, spec in self._pair(in_details, inputs)
        ]
        self.outputs = [
            self._tensor(name, out_details[name], spec)
            for name, spec in self._pair(out_details, outputs)
        ]
        # A batch dimension of -1 in the signature resizes per call; a fixed one does not.
        self.batch_capable = all(
            int(d["shape_signature"][0]) == -1
            for d in in_details.values()
            if len(d["shape_signature"])
        )

    @staticmethod
    def _pair(
        details: Mapping[str, Any], specs: Sequence[TensorSpec]
    ) -> list[tuple[str, TensorSpec]]:
        if len(details) != len(specs):
            raise BuildError(
                f"the TFLite artifact has {len(details)} tensors where the source has {len(specs)}"
            )
        by_name = {s.name: s for s in specs}
        if set(details) == set(by_name):
            return [(name, by_name[name]) for name in details]
        # TFLiteConverter renames outputs output_0, output_1, ... in the source's order.
        return list(zip(sorted(details, key=_natural), specs, strict=True))

    @staticmethod
    def _tensor(name: str, detail: Mapping[str, Any], spec: TensorSpec) -> TFLiteTensor:
        shape = tuple(int(d) for d in detail["shape"])
        scale, zero_point = detail["quantization"]
        return TFLiteTensor(
            name,
            spec.name,
            shape,
            np.dtype(detail["dtype"]).name,
            float(scale),
            int(zero_point),
            _permutation(spec, shape),
        )

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        args = {t.name: _to_artifact(feeds[t.source], t) for t in self.inputs}
        result = self.runner(**args)
        return [_from_artifact(result[t.name], t) for t in self.outputs]

    def tensors(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }


def _natural(name: str) -> tuple[str, int]:
    head, _, tail = name.rpartition("_")
    return (head, int(tail)) if tail.isdigit() else (name, 0)


def _to_artifact(array: np.ndarray, t: TFLiteTensor) -> np.ndarray:
    if t.permutation:
        array = array.transpose(t.permutation)
    if t.scale:
        info = np.iinfo(t.dtype)
        array = np.clip(np.round(array / t.scale) + t.zero_point, info.min, info.max)
    return np.ascontiguousarray(array.astype(t.dtype))


def _from_artifact(array: np.ndarray, t: TFLiteTensor) -> np.ndarray:
    out = (array.astype(np.float32) - t.zero_point) * t.scale if t.scale else array
    if t.permutation:
        out = out.transpose(np.argsort(t.permutation))
    return np.asarray(out)


# --- loading ----------------------------------------------------------------------------------


def load(
    artifact: Path | bytes,
    *,
    runtime: str,
    threads: int,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    settings: Mapping[str, Any] | None = None,
    version_dir: Path | None = None,
) -> OnnxModel | TFLiteModel:
    """Open an artifact in the runtime its manifest names, as its runtime settings say;
    ``version_dir``, an installed version's directory, holds what the runtime caches for it."""
    settings = settings or {}
    if runtime == "onnx":
        try:
            from edge_sdk.runtime.ort import open_session
        except ImportError as e:
            if (e.name or "").partition(".")[0] != "onnxruntime":
                raise
            # A device installed with [agent-tflite] only: name the extra, not the module.
            raise UnsupportedError(
                "this bundle runs on onnxruntime, which is not installed here: "
                "pip install 'edgesdk-fleet[agent]'"
            ) from e

        return OnnxModel(
            open_session(
                artifact,
                threads=threads,
                providers=settings.get("providers") or ("CPUExecutionProvider",),
                graph_level=str(settings.get("graph_optimization_level", "all")),
                settings=settings,
                version_dir=version_dir,
            )
        )
    if runtime == "tflite":
        data = artifact.read_bytes() if isinstance(artifact, Path) else artifact
        return TFLiteModel(data, threads=threads, inputs=inputs, outputs=outputs)
    raise UnsupportedError(f"unknown runtime {runtime!r}; this edge-sdk runs onnx and tflite")


def load_bundle(
    bundle: Bundle, *, threads: int, artifact_path: Path | None = None
) -> OnnxModel | TFLiteModel:
    """The artifact of a (verified) bundle, opened as its manifest says. ``artifact_path``
    opens the same bytes from a file instead: onnxruntime keeps a second copy of a model
    given as bytes (about its size again in heap), not of one it reads itself."""
    m = bundle.manifest
    return load(
        artifact_path if artifact_path is not None else bundle.artifact,
        runtime=m.runtime,
        threads=threads,
        inputs=m.inputs,
        outputs=m.outputs,
        settings=m.runtime_settings,
        # An installed version's artifact sits in its version directory (agent.update.store).
        version_dir=artifact_path.parent if artifact_path is not None else None,
    )


def named_outputs(
    model: Model, outputs: Sequence[TensorSpec]
) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    """``model.run`` with outputs keyed by the source's output names."""
    names = [o.name for o in outputs]

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, model.run(feeds), strict=True))

    return run


def open_model(path: Path, *, threads: int) -> OnnxModel | TFLiteModel:
    """A bundle file or an installed version directory, opened as its manifest says. This
    does not verify signatures: the agent verifies before it installs."""
    from edge_sdk.core.bundle import read_bundle, read_unpacked

    bundle = read_unpacked(path) if path.is_dir() else read_bundle(path)
    return load_bundle(bundle, threads=threads)

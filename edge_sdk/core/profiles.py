"""Hardware profiles: one TOML file per target, loaded into a frozen, validated structure.

A profile is data only. It says which runtime and precisions a target wants, in which order, how to
quantize, and how much fidelity may be lost; the build pipeline decides everything else from it.
Validation is strict (an unknown key is an error) because a typo in a profile silently changes
what ships to a fleet.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from edge_sdk.core.host import CPU_FEATURES
from edge_sdk.core.profile_image import ImagePreprocess as ImagePreprocess
from edge_sdk.core.profile_image import image_problem as image_problem
from edge_sdk.core.profile_image import override_image as override_image
from edge_sdk.core.strict_toml import QuotedKeys, StrictTable
from edge_sdk.core.toml_schema import dataclass_schema
from edge_sdk.core.userfile import KIB, load_toml
from edge_sdk.errors import ProfileError

Runtime = Literal["onnx", "tflite"]
Selection = Literal["fastest", "preference"]

ONNX_PRECISIONS = ("fp32", "fp16", "int8_dynamic", "int8_static")
TFLITE_PRECISIONS = ("fp32", "fp16", "int8_dynamic", "int8_full")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QUANT_TYPES = ("int8", "uint8")
IO_TYPES = ("float", "int8", "uint8")
QUANT_FORMATS = ("qdq", "qoperator")
# The int8 arithmetic a target computes with. Only x86 without VNNI saturates: its u8s8 products
# go through 16-bit intermediate sums (vpmaddubsw), which is what reduce_range exists for. VNNI,
# Arm's dot-product instructions and TensorRT accumulate in 32 bits, as an exact QDQ simulation.
INT8_KERNELS = ("x86-vnni", "x86-avx2", "arm-dot", "tensorrt", "edgetpu")
SATURATING_KERNELS = frozenset({"x86-avx2"})
# Op types whose int8 form costs fidelity out of proportion to the time it saves.
FLOAT_OP_TYPES = ("Softmax", "Sigmoid", "HardSigmoid", "HardSwish", "Resize")

ENV_PROFILE_PATH = "EDGE_SDK_PROFILE_PATH"

# A profile id names bundle files and travels to devices in manifests and topics.
PROFILE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
MAX_PROFILE_BYTES = 256 * KIB
MAX_THREADS = 1024
MAX_CALIBRATION_SAMPLES = 1_000_000
MAX_MIXED_PRECISION_STEPS = 16  # each step keeps twice as many layers in float: 2**16 is plenty
MAX_BUDGET_MB = 1 << 24  # 16 TiB


@dataclass(frozen=True)
class Quantization:
    weight_type: str = "int8"
    activation_type: str = "uint8"
    per_channel: bool = True
    # Dynamic int8 serves MatMul-heavy models, where per-tensor weights measured faster and at
    # least as accurate (the transformer example: 2.3x vs 2.1x, no accuracy loss vs -0.3 points).
    dynamic_per_channel: bool = False
    symmetric_weights: bool = True
    symmetric_activations: bool = False
    # Without VNNI, u8s8 products can saturate int16 accumulators; ORT's advice is a 7-bit range.
    reduce_range: bool = False
    # TensorRT wants float biases beside int8 weights; onnxruntime's CPU kernels want int32 ones.
    quantize_bias: bool = True
    calibration_methods: tuple[str, ...] = ("minmax",)
    calibration_samples: int = 256
    # How many mixed-precision candidates (most sensitive layers kept in float) to try when
    # full int8 breaks the accuracy budget.
    mixed_precision_steps: int = 3
    io_type: str = "float"
    # Operator forms the search tries: QDQ everywhere; QOperator too where the CPU runs it.
    formats: tuple[str, ...] = ("qdq",)
    # Op types a "float-ops" candidate keeps in float (with the first convolution and the head).
    float_op_types: tuple[str, ...] = FLOAT_OP_TYPES


@dataclass(frozen=True)
class AccuracyBudget:
    """Maximum fidelity a candidate may lose against the float model."""

    max_top1_disagreement: float = 0.01
    min_cosine: float = 0.99
    max_accuracy_drop: float = 0.005


@dataclass(frozen=True)
class ResourceBudget:
    memory_mb: int
    storage_mb: int


@dataclass(frozen=True)
class SecondRuntime:
    """A second runtime a build tries beside the profile's own (the ``[second_runtime]``
    table): onnxruntime on the CPU beside TFLite on a Raspberry Pi, say. Its candidates are
    built, measured and reported like the others, share the profile's quantization and budgets,
    and come after the profile's own in the preference order; so one is chosen when the first
    runtime cannot convert the model or breaks the budget, or when it measures faster where
    speed decides."""

    runtime: Runtime
    precisions: tuple[str, ...]
    providers: tuple[str, ...] = ()
    delegates: tuple[str, ...] = ()


@dataclass(frozen=True)
class HardwareProfile:
    id: str
    description: str
    arch: str
    runtime: Runtime
    precisions: tuple[str, ...]
    opset: int
    threads: int
    selection: Selection
    quantization: Quantization
    budget: ResourceBudget
    accuracy_budget: AccuracyBudget
    providers: tuple[str, ...] = ()
    delegates: tuple[str, ...] = ()
    # TensorRT's engine and timing caches kept in each installed version's directory
    # (<version dir>/trt-cache) so a device builds an engine once per version, not per start.
    tensorrt_cache: bool = False
    image: ImagePreprocess = field(default_factory=ImagePreprocess)
    source: str = ""
    # How the target computes int8 (INT8_KERNELS); decides how int8 fidelity is judged.
    int8_kernels: str = "arm-dot"
    # CPU features the target has (host.CPU_FEATURES); a host lacking one cannot stand in for
    # it when timing candidates. Empty: those its int8_kernels imply (host.DEFAULT_FEATURES).
    cpu_features: tuple[str, ...] = ()
    second_runtime: SecondRuntime | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def runtimes(self) -> tuple[Runtime, ...]:
        """Every runtime a build for this profile may choose, and so a device may be sent."""
        second = self.second_runtime
        return (self.runtime,) if second is None else (self.runtime, second.runtime)

    def on_second_runtime(self) -> HardwareProfile:
        """The profile as its second runtime's candidates are built: that runtime, its
        precisions and providers or delegates; the rest (quantization, budgets) shared."""
        second = self.second_runtime
        if second is None:
            raise ValueError(f"profile {self.id} has no second runtime")
        return replace(
            self,
            runtime=second.runtime,
            precisions=second.precisions,
            providers=second.providers,
            delegates=second.delegates,
            tensorrt_cache=False,
            second_runtime=None,
        )


# --- validation -------------------------------------------------------------------------------

_STYLE = QuotedKeys(ProfileError)

T = TypeVar("T")


class _ProfileTable(StrictTable):
    """One profile table (``edge_sdk.core.strict_toml``) with the value rules profiles use;
    unknown keys are refused once a table has been read (:meth:`reject_unknown`)."""

    def get(self, key: str, kind: type[T], default: T | None = None) -> T:
        value = self.value(key, kind)
        if value is None:
            return self.required(key, kind) if default is None else default
        return value

    def strings(self, key: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        raw = self.get(key, list, None if default is None else list(default))
        if not all(isinstance(v, str) for v in raw):
            raise self.fail(key, "must be a list of strings")
        return tuple(raw)

    def numbers(self, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
        raw = self.get(key, list, list(default))
        if not raw or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw):
            raise self.fail(key, "must be a non-empty list of numbers")
        return tuple(float(v) for v in raw)

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.get(key, str, default)
        if value not in allowed:
            raise self.fail(key, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def choices(
        self, key: str, allowed: tuple[str, ...], default: tuple[str, ...] | None
    ) -> tuple[str, ...]:
        values = self.strings(key, default)
        for value in values:
            if value not in allowed:
                raise self.fail(key, f"has {value!r}; allowed: {', '.join(allowed)}")
        return values

    def positive(self, key: str, default: int | None = None, high: int = 1 << 31) -> int:
        return self.bounded(key, 1, high, default)

    def bounded(self, key: str, low: int, high: int, default: int | None = None) -> int:
        value = self.get(key, int, default)
        if not low <= value <= high:
            what = "a positive integer" if low == 1 else "an integer"
            raise self.fail(key, f"must be {what} between {low} and {high}, got {value}")
        return value

    def finite(self, key: str, default: float) -> float:
        value = self.get(key, float, default)
        if not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, got {value}")
        return value

    def fraction(self, key: str, default: float) -> float:
        value = self.get(key, float, default)
        if not 0.0 <= value <= 1.0:
            raise self.fail(key, f"must be between 0 and 1, got {value}")
        return value


def _sub(reader: _ProfileTable, key: str, build: Callable[[_ProfileTable], T], required: bool) -> T:
    if required and not reader.has(key):
        raise reader.fail(key, "is missing; every profile must have this table")
    sub = reader.table(key)
    value = build(sub)
    sub.reject_unknown()
    return value


def _quantization(r: _ProfileTable, runtime: str) -> Quantization:
    d = Quantization()
    q = Quantization(
        weight_type=r.choice("weight_type", QUANT_TYPES, d.weight_type),
        activation_type=r.choice("activation_type", QUANT_TYPES, d.activation_type),
        per_channel=r.get("per_channel", bool, d.per_channel),
        dynamic_per_channel=r.get("dynamic_per_channel", bool, d.dynamic_per_channel),
        symmetric_weights=r.get("symmetric_weights", bool, d.symmetric_weights),
        symmetric_activations=r.get("symmetric_activations", bool, d.symmetric_activations),
        reduce_range=r.get("reduce_range", bool, d.reduce_range),
        quantize_bias=r.get("quantize_bias", bool, d.quantize_bias),
        calibration_methods=r.choices(
            "calibration_methods", CALIBRATION_METHODS, d.calibration_methods
        ),
        calibration_samples=r.positive(
            "calibration_samples", d.calibration_samples, MAX_CALIBRATION_SAMPLES
        ),
        mixed_precision_steps=r.bounded(
            "mixed_precision_steps", 0, MAX_MIXED_PRECISION_STEPS, d.mixed_precision_steps
        ),
        io_type=r.choice("io_type", IO_TYPES, d.io_type),
        formats=r.choices("formats", QUANT_FORMATS, d.formats),
        float_op_types=r.strings("float_op_types", d.float_op_types),
    )
    if not q.formats:
        raise r.fail("formats", "must name at least one of qdq, qoperator")
    if "qoperator" in q.formats and runtime != "onnx":
        raise r.fail("formats", "'qoperator' is an ONNX form; TFLite profiles leave it out")
    if not q.calibration_methods:
        raise r.fail("calibration_methods", "must name at least one method")
    if q.io_type != "float" and runtime == "onnx":
        raise r.fail(
            "io_type", "must be 'float' for ONNX profiles (quantized I/O is a TFLite option)"
        )
    return q


def _second_runtime(r: _ProfileTable, first: str) -> SecondRuntime:
    runtime = r.choice("runtime", ("onnx", "tflite"))
    if runtime == first:
        raise r.fail("runtime", f"must differ from the profile's own runtime ({first})")
    second = SecondRuntime(
        runtime=runtime,  # type: ignore[arg-type]
        precisions=r.choices(
            "precisions", ONNX_PRECISIONS if runtime == "onnx" else TFLITE_PRECISIONS, None
        ),
        providers=r.strings("providers", ()),
        delegates=r.strings("delegates", ()),
    )
    if not second.precisions:
        raise r.fail("precisions", "must list at least one precision")
    if runtime == "onnx" and not second.providers:
        raise r.fail("providers", "must list at least one execution provider for ONNX")
    if runtime == "onnx" and second.delegates:
        raise r.fail("delegates", "is for TFLite; ONNX lists 'providers'")
    if runtime == "tflite" and second.providers:
        raise r.fail("providers", "is for ONNX; TFLite lists 'delegates'")
    return second


def _accuracy(r: _ProfileTable) -> AccuracyBudget:
    d = AccuracyBudget()
    return AccuracyBudget(
        max_top1_disagreement=r.fraction("max_top1_disagreement", d.max_top1_disagreement),
        min_cosine=r.fraction("min_cosine", d.min_cosine),
        max_accuracy_drop=r.fraction("max_accuracy_drop", d.max_accuracy_drop),
    )


def _image(r: _ProfileTable) -> ImagePreprocess:
    d = ImagePreprocess()
    image = ImagePreprocess(
        scale=r.get("scale", float, d.scale),
        mean=r.numbers("mean", d.mean),
        std=r.numbers("std", d.std),
    )
    problem = image_problem(image)
    if problem is not None:
        key, message = problem
        raise r.fail(key, message)
    return image


def parse_profile(document: Mapping[str, Any], source: str) -> HardwareProfile:
    """Validate a parsed TOML document; ``source`` names the file in every error."""
    r = _ProfileTable(document, _STYLE, f"profile {source}")
    runtime = r.choice("runtime", ("onnx", "tflite"))
    allowed = ONNX_PRECISIONS if runtime == "onnx" else TFLITE_PRECISIONS
    profile_id = r.get("id", str)
    if not PROFILE_ID.match(profile_id):
        raise r.fail(
            "id",
            f"{profile_id!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit (it names bundle files and travels to devices); rename it",
        )
    arch = r.choice("arch", ("x86_64", "aarch64", "armv7l"))
    profile = HardwareProfile(
        id=profile_id,
        description=r.get("description", str),
        arch=arch,
        # Unsaid, an x86 target is assumed to lack VNNI (the cautious reading: it saturates).
        int8_kernels=r.choice(
            "int8_kernels", INT8_KERNELS, "x86-avx2" if arch == "x86_64" else "arm-dot"
        ),
        cpu_features=r.choices("cpu_features", tuple(CPU_FEATURES), ()),
        runtime=runtime,  # type: ignore[arg-type]
        precisions=r.choices("precisions", allowed, None),
        opset=r.positive("opset"),
        threads=r.positive("threads", None, MAX_THREADS),
        selection=r.choice("selection", ("fastest", "preference")),  # type: ignore[arg-type]
        providers=r.strings("providers", ()),
        delegates=r.strings("delegates", ()),
        tensorrt_cache=r.get("tensorrt_cache", bool, False),
        quantization=_sub(r, "quantization", lambda q: _quantization(q, runtime), required=True),
        budget=_sub(
            r,
            "budget",
            lambda b: ResourceBudget(
                memory_mb=b.positive("memory_mb", None, MAX_BUDGET_MB),
                storage_mb=b.positive("storage_mb", None, MAX_BUDGET_MB),
            ),
            required=True,
        ),
        accuracy_budget=_sub(r, "accuracy_budget", _accuracy, required=True),
        image=_sub(r, "image", _image, required=False),
        source=source,
    )
    if r.has("second_runtime"):
        second = _sub(r, "second_runtime", lambda t: _second_runtime(t, runtime), required=True)
        profile = replace(profile, second_runtime=second)
        if second.runtime == "onnx" and profile.quantization.io_type != "float":
            raise r.fail(
                "second_runtime", "runs ONNX, whose I/O is float: set quantization.io_type 'float'"
            )
    r.reject_unknown()
    if not profile.precisions:
        raise r.fail("precisions", "must list at least one precision")
    if runtime == "onnx" and not profile.providers:
        raise r.fail("providers", "must list at least one execution provider for an ONNX profile")
    if profile.tensorrt_cache and "TensorrtExecutionProvider" not in profile.providers:
        raise r.fail("tensorrt_cache", "is for profiles whose providers list TensorRT")
    if runtime == "tflite" and profile.providers:
        raise r.fail("providers", "is for ONNX profiles; TFLite profiles list 'delegates'")
    if not 7 <= profile.opset <= 23:
        raise r.fail("opset", f"must be an ONNX opset between 7 and 23, got {profile.opset}")
    return profile


def host_int8_kernels(cpuinfo: str | None = None, machine: str | None = None) -> str:
    """The int8 arithmetic of this host's CPU, as onnxruntime's fused kernels compute it: on
    x86, VNNI (flags avx512_vnni or avx_vnni in /proc/cpuinfo) or not; Arm otherwise."""
    from edge_sdk.core.host import detect

    return detect(cpuinfo, machine, providers=()).int8_kernels


def profile_schema() -> dict[str, Any]:
    """A profile's JSON Schema for editors (docs/schemas/profile.json)."""
    return dataclass_schema(
        HardwareProfile, "edge-sdk hardware profile", skip={HardwareProfile: ("source",)}
    )


def load_profile_file(path: Path) -> HardwareProfile:
    """A regular file of at most 256 KiB (a FIFO or device is refused, not read)."""
    document = load_toml(path, "profile file", MAX_PROFILE_BYTES, ProfileError)
    return parse_profile(document, str(path))


# --- lookup -----------------------------------------------------------------------------------


def builtin_profile_dir() -> Path:
    # hardware_profiles/ is a data-only directory installed beside edge_sdk/.
    return Path(__file__).resolve().parents[2] / "hardware_profiles"


def search_path() -> list[Path]:
    """User directories first so a user can shadow a built-in profile on purpose."""
    dirs = [Path(p) for p in os.environ.get(ENV_PROFILE_PATH, "").split(os.pathsep) if p]
    dirs.append(Path.home() / ".config" / "edge-sdk" / "profiles")
    dirs.append(builtin_profile_dir())
    return dirs


def _profile_files() -> Iterator[tuple[str, Path]]:
    seen: set[str] = set()
    for directory in search_path():
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            if path.stem not in seen:
                seen.add(path.stem)
                yield path.stem, path


def list_profiles() -> list[HardwareProfile]:
    return [load_profile_file(path) for _, path in sorted(_profile_files())]


def resolve_profile(name_or_path: str) -> HardwareProfile:
    """A profile by id from the search path, or a file when given a path to a .toml."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        return load_profile_file(Path(name_or_path))
    known = dict(_profile_files())
    if name_or_path in known:
        profile = load_profile_file(known[name_or_path])
        if profile.id != name_or_path:
            raise ProfileError(
                f"profile {known[name_or_path]}: key 'id' is {profile.id!r} but the file is named "
                f"{name_or_path!r}; make them match"
            )
        return profile
    hint = difflib.get_close_matches(name_or_path, list(known), n=1, cutoff=0.4)
    suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
    raise ProfileError(
        f"unknown profile '{name_or_path}'{suggestion} (see `edge-sdk profiles list`, or pass a "
        "path to a .toml file)"
    )

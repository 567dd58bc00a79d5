"""Host honesty: what this machine is, and whether its timings can stand in for the target's.

The build times candidates here. That is evidence about the target only when this host computes
the way the target does: the same architecture, every CPU feature the profile assumes (VNNI,
AVX-512, AVX2; NEON and dot product on Arm), and the execution provider the profile runs with.
Otherwise the timings are this host's figures and nothing more, and the choice falls back to the
profile's precision order within the accuracy budget. Everything here is pure except ``detect``.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_sdk.core.profiles import HardwareProfile

# The features a profile may assume, as this module names them, and the /proc/cpuinfo flags
# that give each one. VNNI comes in two encodings (AVX512-VNNI on servers, AVX-VNNI on client
# parts); onnxruntime's int8 kernels use either.
CPU_FEATURES: dict[str, tuple[str, ...]] = {
    "avx2": ("avx2",),
    "avx512": ("avx512f",),
    "vnni": ("avx512_vnni", "avx_vnni"),
    "neon": ("asimd", "neon"),
    "dotprod": ("asimddp",),
}
X86 = frozenset({"x86_64", "amd64", "i686", "i386"})
ARM64 = frozenset({"aarch64", "arm64"})
# What a profile assumes when it says nothing, from its int8 arithmetic (profiles.INT8_KERNELS).
DEFAULT_FEATURES: dict[str, tuple[str, ...]] = {
    "x86-vnni": ("avx2", "vnni"),
    "x86-avx2": ("avx2",),
    "arm-dot": ("neon",),
}
# Targets whose int8 runs on an accelerator: no CPU stands in for them.
ACCELERATOR_KERNELS = frozenset({"tensorrt", "edgetpu"})
MAX_CPUINFO = 1 << 20


@dataclass(frozen=True)
class HostDescription:
    machine: str  # x86_64, aarch64 or armv7l as the profiles name architectures
    cpu: str  # the model name /proc/cpuinfo gives, or "" where it gives none
    features: tuple[str, ...]  # CPU_FEATURES keys this host has, sorted
    providers: tuple[str, ...]  # onnxruntime's execution providers here
    cores: int

    @property
    def int8_kernels(self) -> str:
        """This host's int8 arithmetic in profiles.INT8_KERNELS terms."""
        if self.machine != "x86_64":
            return "arm-dot"
        return "x86-vnni" if "vnni" in self.features else "x86-avx2"

    def with_int8_kernels(self, kernels: str) -> HostDescription:
        """This host as if its int8 arithmetic were ``kernels`` (tests stand for other hosts)."""
        if self.machine != "x86_64" or kernels == self.int8_kernels:
            return self
        features = set(self.features) - {"vnni"}
        if kernels == "x86-vnni":
            features.add("vnni")
        return replace(self, features=tuple(sorted(features)))

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "cpu": self.cpu,
            "cpu_features": list(self.features),
            "int8_kernels": self.int8_kernels,
            "providers": list(self.providers),
            "cores": self.cores,
        }


def normalise_machine(machine: str) -> str:
    m = machine.lower()
    if m in X86:
        return "x86_64"
    if m in ARM64:
        return "aarch64"
    return "armv7l" if m.startswith("armv7") else m


def parse_cpuinfo(cpuinfo: str, machine: str) -> tuple[str, tuple[str, ...]]:
    """(model name, CPU_FEATURES keys) from /proc/cpuinfo text; x86 says 'flags', Arm
    'Features'. Only the first processor's lines count: they are alike on every core we
    target, and a big.LITTLE part reports the common set."""
    flags: set[str] = set()
    cpu = ""
    seen_flags = False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features") and not seen_flags:
            flags.update(value.split())
            seen_flags = True
        elif key in ("model name", "hardware", "cpu model") and not cpu:
            cpu = value.strip()[:120]
    arch = normalise_machine(machine)
    if arch == "aarch64":
        flags.add("asimd")  # Advanced SIMD is mandatory in ARMv8-A
    features = sorted(
        name
        for name, names in CPU_FEATURES.items()
        if flags.intersection(names) and (name in ("neon", "dotprod")) == (arch != "x86_64")
    )
    return cpu, tuple(features)


def detect(
    cpuinfo: str | None = None,
    machine: str | None = None,
    providers: Sequence[str] | None = None,
) -> HostDescription:
    """This host, read from /proc/cpuinfo and onnxruntime (each argument replaces one read)."""
    import os

    machine = machine if machine is not None else platform.machine()
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read(MAX_CPUINFO)
        except OSError:
            cpuinfo = ""
    if providers is None:
        try:
            import onnxruntime as ort

            providers = tuple(ort.get_available_providers())
        except ImportError:
            providers = ()
    cpu, features = parse_cpuinfo(cpuinfo, machine)
    return HostDescription(
        machine=normalise_machine(machine),
        cpu=cpu or platform.processor(),
        features=features,
        providers=tuple(providers),
        cores=os.cpu_count() or 1,
    )


def assumed_features(stated: Iterable[str], int8_kernels: str) -> tuple[str, ...]:
    """The CPU features a profile assumes: those it states, else its int8 arithmetic's."""
    stated = tuple(stated)
    return stated if stated else DEFAULT_FEATURES.get(int8_kernels, ())


@dataclass(frozen=True)
class StandIn:
    ok: bool
    why: str  # empty when ok; otherwise what the host lacks, for the report's one line


def stand_in(
    host: HostDescription,
    arch: str,
    int8_kernels: str,
    features: Sequence[str],
    providers: Sequence[str],
    runtime: str = "onnx",
    delegates: Sequence[str] = (),
) -> StandIn:
    """Whether this host's timings are evidence about the target the profile describes."""
    if int8_kernels in ACCELERATOR_KERNELS:
        return StandIn(False, f"the target computes on {int8_kernels}, not on a CPU like this one")
    if host.machine != arch:
        return StandIn(False, f"this host is {host.machine}, the target {arch}")
    missing = [f for f in assumed_features(features, int8_kernels) if f not in host.features]
    if missing:
        return StandIn(False, f"this host lacks {', '.join(missing)}, which the target has")
    if runtime == "onnx" and providers and providers[0] not in host.providers:
        return StandIn(False, f"this host's onnxruntime lacks {providers[0]}")
    # XNNPACK, the CPU delegate, runs here as it does there; an accelerator's delegate
    # (Edge TPU, GPU) is caught above by the target's int8 arithmetic.
    if runtime == "tflite" and delegates and delegates[0] != "xnnpack":
        return StandIn(False, f"the target runs the {delegates[0]} delegate, this host does not")
    return StandIn(True, "")


def stand_in_line(profile_id: str, verdict: StandIn) -> str:
    """The report's one line when this host cannot stand in for the target."""
    return (
        f"host timings are this host's only: {verdict.why}, so it cannot stand in for "
        f"{profile_id}; chosen by the profile's precision order within the accuracy budget "
        "(measure on a device with --measure-on DEVICE)"
    )


def verdict_for(profile: HardwareProfile, host: HostDescription) -> StandIn:
    return stand_in(
        host,
        profile.arch,
        profile.int8_kernels,
        profile.cpu_features,
        profile.providers,
        profile.runtime,
        profile.delegates,
    )


def selecting(profile: HardwareProfile, verdict: StandIn) -> HardwareProfile:
    """The profile the choice is made with: host speed decides only on a stand-in."""
    if verdict.ok or profile.selection == "preference":
        return profile
    return replace(profile, selection="preference")

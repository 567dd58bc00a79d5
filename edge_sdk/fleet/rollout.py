"""Canary rollouts, the decision core's first half: what a rollout is and how one is planned.
Pure: device views in, a ``Rollout`` record out; no I/O, so every rule is tested without a
broker. ``edge_sdk.fleet.rollout_steps`` judges the waves and moves the record on;
``edge_sdk.fleet.rollout_run`` is the shell that persists and publishes.

A rollout is one record that moves through phases, persisted *before* each action (as the
agent's journal is), so a restarted operator resumes exactly where it stopped:

    assigning ──published──► watching ──wave passed──► assigning (next wave)
        ▲                        │                  └─► finalizing ──published──► completed
        │                        └──halt──► rolling_back ──published──► halted
        └──── (resume repeats the publish of the phase it finds: assignments are idempotent)

``plan`` chooses the targets and cuts them into waves; ``summary`` is a record's ``--json``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from edge_sdk.errors import InputError
from edge_sdk.fleet.inventory import DeviceView, ModelView


class Phase(StrEnum):
    ASSIGNING = "assigning"
    WATCHING = "watching"
    ROLLING_BACK = "rolling_back"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    HALTED = "halted"


ACTIVE = frozenset({Phase.ASSIGNING, Phase.WATCHING, Phase.ROLLING_BACK, Phase.FINALIZING})


class Verdict(StrEnum):
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"
    OFFLINE = "offline"


@dataclass(frozen=True)
class Gate:
    """What a wave must show to pass."""

    max_failure_rate: float = 0.0  # failed / (passed + failed) above this halts
    bake_s: float = 0.0  # fleet-level probation: watch a settled wave this long before passing
    wave_timeout_s: float = 600.0  # an online device silent this long counts as failed
    max_latency_ratio: float = 1.5  # new p95 / incumbent p95 on the same device
    max_error_rate_increase: float = 0.01  # new error rate - incumbent error rate
    min_requests: int = 20  # figures with fewer requests are not judged

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise InputError(
                f"--max-failure-rate {self.max_failure_rate:g} must be between 0 and 1 "
                "(0.05 halts when more than 5% of a wave fails)"
            )
        for name, value in (("--probation", self.bake_s), ("--wave-timeout", self.wave_timeout_s)):
            if not math.isfinite(value) or value < 0:
                raise InputError(f"{name} {value:g} must be a number of seconds >= 0")
        if not math.isfinite(self.max_latency_ratio) or self.max_latency_ratio < 1.0:
            raise InputError(
                f"--max-latency-ratio {self.max_latency_ratio:g} must be >= 1 (1.5 allows a p95 "
                "50% above the incumbent's)"
            )
        if not 0.0 <= self.max_error_rate_increase <= 1.0:
            raise InputError(
                f"--max-error-rate-increase {self.max_error_rate_increase:g} must be between 0 "
                "and 1"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "max_failure_rate": self.max_failure_rate,
            "bake_s": self.bake_s,
            "wave_timeout_s": self.wave_timeout_s,
            "max_latency_ratio": self.max_latency_ratio,
            "max_error_rate_increase": self.max_error_rate_increase,
            "min_requests": self.min_requests,
        }


@dataclass(frozen=True)
class DeviceResult:
    verdict: Verdict
    reason: str = ""
    wave: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"verdict": str(self.verdict), "reason": self.reason, "wave": self.wave}


@dataclass(frozen=True)
class Order:
    """One signed assignment to publish: ``scope`` is ``devices/<id>`` or ``groups/<g>``."""

    scope: str
    version: int
    rollback: bool = False


@dataclass(frozen=True)
class Rollout:
    """The persisted record of one rollout (``<repo>/rollouts/<model>.json``).

    ``profiles`` are those the release has a variant for: a rollout takes every device of the
    group whose profile is among them, however many kinds of hardware that is."""

    model: str
    version: int
    label: str
    profiles: tuple[str, ...]
    group: str | None
    waves: tuple[tuple[str, ...], ...]  # the devices each wave adds
    gate: Gate
    incumbents: Mapping[str, int | None]  # what each device ran when the rollout was planned
    groups: tuple[str, ...] = ()  # the groups the finished rollout assigns (late joiners)
    phase: Phase = Phase.ASSIGNING
    wave: int = 0  # index into waves
    serial: int = 0  # the assignment serial of this phase's publish
    since: float = 0.0  # when this phase began (wall clock)
    settled_at: float = 0.0  # when the current wave had no pending device (bake start)
    results: Mapping[str, DeviceResult] = field(default_factory=dict)
    reason: str = ""
    skipped: Mapping[str, str] = field(default_factory=dict)  # device: why not in the plan
    rolled_back: tuple[str, ...] = ()  # devices the halt sent back (once that was published)

    def __post_init__(self) -> None:
        if isinstance(self.profiles, str):  # one profile, as records before variants held
            object.__setattr__(self, "profiles", (self.profiles,))

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(d for wave in self.waves for d in wave)

    @property
    def reached(self) -> tuple[str, ...]:
        """Devices assigned so far (every wave up to the current one)."""
        return tuple(d for wave in self.waves[: self.wave + 1] for d in wave)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "label": self.label,
            "profiles": list(self.profiles),
            "group": self.group,
            "waves": [list(w) for w in self.waves],
            "gate": self.gate.to_json(),
            "incumbents": dict(self.incumbents),
            "groups": list(self.groups),
            "phase": str(self.phase),
            "wave": self.wave,
            "serial": self.serial,
            "since": self.since,
            "settled_at": self.settled_at,
            "results": {d: r.to_json() for d, r in sorted(self.results.items())},
            "reason": self.reason,
            "skipped": dict(self.skipped),
            "rolled_back": list(self.rolled_back),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Rollout:
        """A record this module wrote; raises KeyError/TypeError/ValueError when it is not."""
        gate = doc["gate"]
        return cls(
            model=str(doc["model"]),
            version=int(doc["version"]),
            label=str(doc["label"]),
            # Records written before releases had variants name one "profile".
            profiles=tuple(str(p) for p in doc["profiles"])
            if "profiles" in doc
            else (str(doc["profile"]),),
            group=None if doc["group"] is None else str(doc["group"]),
            waves=tuple(tuple(str(d) for d in w) for w in doc["waves"]),
            gate=Gate(**{k: gate[k] for k in Gate.__dataclass_fields__}),
            incumbents={
                str(d): None if v is None else int(v) for d, v in doc["incumbents"].items()
            },
            groups=tuple(str(g) for g in doc["groups"]),
            phase=Phase(doc["phase"]),
            wave=int(doc["wave"]),
            serial=int(doc["serial"]),
            since=float(doc["since"]),
            settled_at=float(doc["settled_at"]),
            results={
                str(d): DeviceResult(Verdict(r["verdict"]), str(r["reason"]), int(r["wave"]))
                for d, r in doc["results"].items()
            },
            reason=str(doc["reason"]),
            skipped={str(d): str(r) for d, r in doc["skipped"].items()},
            rolled_back=tuple(str(d) for d in doc.get("rolled_back", [])),
        )


# --- planning ---------------------------------------------------------------------------------


def parse_waves(text: str) -> tuple[str, ...]:
    """``1,10%,50%,100%``: each step a device count or a percentage of the targets, cumulative."""
    steps = tuple(part.strip() for part in text.split(","))
    for step in steps:
        number = step.removesuffix("%")
        ok = number.isdigit() and int(number) >= 1
        if step.endswith("%"):
            ok = ok and int(number) <= 100
        if not ok:
            raise InputError(
                f"--waves {text!r}: {step!r} is neither a device count (>= 1) nor a percentage "
                "(1%-100%); use e.g. 1,10%,50%,100%"
            )
    return steps


def wave_sizes(steps: Sequence[str], total: int) -> tuple[int, ...]:
    """Cumulative device counts per wave, deduplicated; ``100%`` always ends at ``total``."""
    sizes: list[int] = []
    for step in steps:
        n = math.ceil(total * int(step[:-1]) / 100) if step.endswith("%") else min(int(step), total)
        n = max(n, sizes[-1] if sizes else 0)
        if n > (sizes[-1] if sizes else 0):
            sizes.append(n)
    return tuple(sizes)


def _order_key(model: str, version: int, device: str) -> str:
    # A stable shuffle: the canary is not always the alphabetically first device, and the same
    # rollout planned twice picks the same canaries.
    return hashlib.sha256(f"{model}/{version}/{device}".encode()).hexdigest()


def _cut(
    steps: Sequence[str], by_profile: Mapping[str, Sequence[str]]
) -> tuple[tuple[str, ...], ...]:
    """Waves across profiles: each step takes its share of *every* profile's devices (``1`` is
    one device of each, ``10%`` a tenth of each), so the canary wave already tries every
    variant and a broken one halts the rollout before it reaches the rest of its hardware."""
    reached = dict.fromkeys(by_profile, 0)
    waves = []
    for step in steps:
        wave: list[str] = []
        for p, devices in by_profile.items():
            total = len(devices)
            n = math.ceil(total * int(step[:-1]) / 100) if step.endswith("%") else int(step)
            n = min(max(n, reached[p]), total)
            wave.extend(devices[reached[p] : n])
            reached[p] = n
        if wave:
            waves.append(tuple(wave))
    return tuple(waves)


def plan(
    model: str,
    version: int,
    label: str,
    profiles: str | Iterable[str],
    views: Mapping[str, DeviceView],
    *,
    steps: Sequence[str],
    gate: Gate,
    group: str | None = None,
) -> Rollout:
    """Choose the targets (devices of ``group`` that manage ``model`` on one of ``profiles``,
    those the release has a variant for) and cut them into waves across profiles (see
    :func:`_cut`): online devices first, so canaries are devices that can answer. A device
    whose profile has no variant is skipped, with the reason in the record."""
    wanted = (profiles,) if isinstance(profiles, str) else tuple(sorted(set(profiles)))
    offered = ", ".join(wanted)
    by_profile: dict[str, list[DeviceView]] = {}
    skipped: dict[str, str] = {}
    for device, view in sorted(views.items()):
        if group is not None and view.group != group:
            continue
        if view.model(model) is None:
            skipped[device] = f"does not manage {model}" if view.at else "has never reported"
        elif view.profile not in wanted:
            has = "a variant" if len(wanted) == 1 else "variants"
            skipped[device] = f"profile {view.profile or '?'}: the release has {has} for {offered}"
        else:
            by_profile.setdefault(view.profile, []).append(view)
    if not by_profile:
        where = f"group {group}" if group else "the fleet"
        kind = "profile" if len(wanted) == 1 else "any of the profiles"
        raise InputError(
            f"no device in {where} runs {model} on {kind} {offered}; check "
            "`edge-sdk fleet status` (devices appear once their agent has reported)"
        )
    for listed in by_profile.values():
        listed.sort(key=lambda v: (v.online is not True, _order_key(model, version, v.device)))
    waves = _cut(steps, {p: [v.device for v in by_profile[p]] for p in sorted(by_profile)})
    targets = [v for listed in by_profile.values() for v in listed]
    incumbents = {v.device: _model(v, model).version for v in targets}
    groups = (group,) if group is not None else tuple(sorted({v.group for v in targets}))
    reached_all = sum(len(w) for w in waves) == len(targets)
    return Rollout(
        model=model,
        version=version,
        label=label,
        profiles=wanted,
        group=group,
        waves=waves,
        gate=gate,
        incumbents=incumbents,
        groups=groups if reached_all else (),
        skipped=skipped,
    )


def _model(view: DeviceView, name: str) -> ModelView:
    found = view.model(name)
    assert found is not None  # plan() only keeps devices that manage the model
    return found


# --- the result -------------------------------------------------------------------------------


def summary(rollout: Rollout) -> dict[str, Any]:
    """The ``--json`` result: per wave counts and per device verdicts."""
    waves = []
    for index, devices in enumerate(rollout.waves):
        verdicts = [rollout.results[d].verdict for d in devices if d in rollout.results]
        waves.append(
            {
                "wave": index + 1,
                "devices": len(devices),
                **{str(v): sum(x == v for x in verdicts) for v in Verdict if v != Verdict.PENDING},
                "reached": index <= rollout.wave,
            }
        )
    return {
        "model": rollout.model,
        "version": rollout.version,
        "label": rollout.label,
        "group": rollout.group,
        "profiles": list(rollout.profiles),
        "status": str(rollout.phase),
        "reason": rollout.reason,
        "waves": waves,
        "devices": {d: r.to_json() for d, r in sorted(rollout.results.items())},
        "offline": sorted(d for d, r in rollout.results.items() if r.verdict == Verdict.OFFLINE),
        "skipped": dict(rollout.skipped),
        "rolled_back": list(rollout.rolled_back),
    }

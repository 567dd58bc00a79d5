"""The device agent's ``agent.toml``: read once at start, validated strictly, then frozen.

Every problem is a one-line :class:`ConfigError` naming the file and the key, because the person
reading it is at a device console or in a service log. Unknown keys are errors (with a
"did you mean"): a typo in a device config silently changes how a fleet behaves. Relative paths are
resolved against the config file's directory, so the agent behaves the same from any working
directory (systemd starts it in /). The file holds product settings only: faults the tests inject
come from the environment (``agent.failpoints``).

Here: the file, its top-level keys and the update sections; ``agent.config_network`` reads
``[broker]``, ``[serving]`` and ``[store]``; ``agent.config_values`` the values all share (on the
core's strict reader, ``edge_sdk.core.strict_toml``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config_network import (
    BROKER_DERIVED,
    BROKER_KEYS,
    SERVING_DERIVED,
    SERVING_KEYS,
    STORE_KEYS,
    BrokerConfig,
    ServingConfig,
    read_broker,
    read_serving,
    read_store,
)
from agent.config_values import ConfigTable, check_identifier, keys_of
from agent.failpoints import ENV as FAILPOINTS_ENV
from agent.update.http_fetch import HttpSettings
from edge_sdk.core.bundle import check_name
from edge_sdk.core.chunking import MAX_CHUNK
from edge_sdk.core.profiles import HardwareProfile, resolve_profile
from edge_sdk.core.text import one_line
from edge_sdk.core.toml_schema import dataclass_schema
from edge_sdk.core.userfile import MIB, load_toml
from edge_sdk.errors import ConfigError, InputError, ProfileError

__all__ = [
    "AgentConfig",
    "BrokerConfig",
    "LimitsConfig",
    "ModelConfig",
    "ProbationConfig",
    "ReportConfig",
    "ServingConfig",
    "check_identifier",
    "check_state_dir",
    "config_schema",
    "load_config",
    "parse_config",
    "prepare_state_dir",
]

# A real agent.toml is a few KiB; far more is the wrong file, and is not read whole.
MAX_CONFIG_BYTES = 1 * MIB
# Sections that are gone, and where what they held went.
RETIRED = {
    "test": f"unknown key; fault injection moved to the {FAILPOINTS_ENV} environment variable "
    f'(e.g. {FAILPOINTS_ENV}="crash_at=verifying"); remove this section',
}


@dataclass(frozen=True)
class ModelConfig:
    name: str
    threads: int = 1
    max_latency_ms: float = 0.0  # self-test latency budget (p95 of the golden vectors); 0: none
    batch_window_ms: float = 0.0  # dynamic batching: merge requests arriving within it; 0: off
    max_batch: int = 32  # samples per merged batch at most


@dataclass(frozen=True)
class ProbationConfig:
    seconds: float = 30.0
    # Agent restarts during one update before it counts as a crash loop and is rolled back.
    max_restarts: int = 3
    check_interval_s: float = 5.0
    # Health gate on the new version's own traffic over the window (issue: serving):
    min_requests: int = 0  # fewer requests than this: judged on golden vectors alone
    max_error_rate: float = 0.01  # fraction of failed requests
    max_latency_ratio: float = 1.5  # p95 against the previous version's p95 on this device


@dataclass(frozen=True)
class LimitsConfig:
    max_metadata_bytes: int = 1 << 20
    max_chunk_bytes: int = 1 << 20
    max_artifact_bytes: int = 256 << 20
    min_free_bytes: int = 64 << 20  # kept free after an update
    keep_versions: int = 2  # current + previous, so a rollback has something to go back to


@dataclass(frozen=True)
class ReportConfig:
    interval_s: float = 60.0  # how often the agent samples its status and decides to publish
    # The longest an unchanged status stays unpublished (report by exception, agent.report_policy).
    max_interval_s: float = 900.0
    # How far a resource figure must move from the value last published to be news: CPU in
    # percentage points of one core; memory and free disk as a fraction of the published value.
    cpu_deadband: float = 10.0
    memory_deadband: float = 0.10
    disk_deadband: float = 0.10


@dataclass(frozen=True)
class AgentConfig:
    path: Path
    device_id: str
    fleet: str
    group: str
    profile: HardwareProfile
    state_dir: Path
    trust_root: Path
    broker: BrokerConfig
    models: tuple[ModelConfig, ...]
    probation: ProbationConfig
    limits: LimitsConfig
    report: ReportConfig
    serving: ServingConfig = field(default_factory=ServingConfig)
    store: HttpSettings = field(default_factory=HttpSettings)


# --- sections ---------------------------------------------------------------------------------


def _models(top: ConfigTable) -> tuple[ModelConfig, ...]:
    tables = top.tables("models", keys_of(ModelConfig))
    if not tables:
        raise top.fail("models", 'no models; add at least one [[models]] table with name = "..."')
    models: list[ModelConfig] = []
    seen: dict[str, int] = {}
    for i, t in enumerate(tables):
        name = t.required("name", str, '"digits"')
        try:
            check_name(name)
        except InputError as e:
            raise t.fail(
                "name",
                f"{name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                "or digit; use the name the bundle was built with",
            ) from e
        if name in seen:
            raise t.fail("name", f"{name!r} is already models[{seen[name]}]; names must be unique")
        seen[name] = i
        models.append(
            ModelConfig(
                name=name,
                threads=t.integer("threads", 1, 1, 1024),
                max_latency_ms=t.number("max_latency_ms", 0.0, positive=False),
                batch_window_ms=t.number("batch_window_ms", 0.0, positive=False),
                max_batch=t.integer("max_batch", 32, 1, 4096),
            )
        )
    return tuple(models)


def _limits(t: ConfigTable) -> LimitsConfig:
    d = LimitsConfig()
    limits = LimitsConfig(
        max_metadata_bytes=t.integer("max_metadata_bytes", d.max_metadata_bytes, 1),
        max_chunk_bytes=t.integer("max_chunk_bytes", d.max_chunk_bytes, 1),
        max_artifact_bytes=t.integer("max_artifact_bytes", d.max_artifact_bytes, 1),
        min_free_bytes=t.integer("min_free_bytes", d.min_free_bytes, 0),
        keep_versions=t.integer("keep_versions", d.keep_versions, 2),
    )
    if limits.max_chunk_bytes < MAX_CHUNK:
        # Publishers cut files into chunks of up to MAX_CHUNK bytes; a lower cap refuses them all.
        raise t.fail(
            "max_chunk_bytes",
            f"{limits.max_chunk_bytes} is below the largest chunk publishers send ({MAX_CHUNK}); "
            "raise it",
        )
    return limits


def _report(t: ConfigTable) -> ReportConfig:
    d = ReportConfig()
    interval_s = t.number("interval_s", d.interval_s, positive=True)
    # Unset, it is never below the sampling interval: a config that only slows sampling down
    # (interval_s = 3600) keeps working.
    max_interval_s = t.number("max_interval_s", max(d.max_interval_s, interval_s), positive=True)
    if max_interval_s < interval_s:
        raise t.fail(
            "max_interval_s",
            f"{max_interval_s:g} is below report.interval_s ({interval_s:g}); the status is "
            "only sampled that often, so raise it to at least that",
        )
    return ReportConfig(
        interval_s=interval_s,
        max_interval_s=max_interval_s,
        cpu_deadband=t.number("cpu_deadband", d.cpu_deadband, positive=False),
        memory_deadband=t.number("memory_deadband", d.memory_deadband, positive=False),
        disk_deadband=t.number("disk_deadband", d.disk_deadband, positive=False),
    )


def _profile(top: ConfigTable, base: Path) -> HardwareProfile:
    name = top.required("profile", str, '"x86-64"')
    # A profile given as a path is relative to this file, like every other path in it.
    if name.endswith(".toml") or "/" in name:
        path = Path(name).expanduser()
        name = str(path if path.is_absolute() else base / path)
    try:
        return resolve_profile(name)
    except ProfileError as e:
        raise top.fail("profile", one_line(e, 1000)) from e


def parse_config(document: Mapping[str, Any], path: Path) -> AgentConfig:
    """Validate a parsed TOML document; ``path`` names the file and anchors relative paths."""
    file = str(path)
    base = path.absolute().parent
    top = ConfigTable.top(document, file, keys_of(AgentConfig, skip=("path",)), RETIRED)
    device_id = top.identifier("device_id", None)
    fleet = top.identifier("fleet", "default")
    group = top.identifier("group", "default")
    profile = _profile(top, base)
    state_dir = top.path("state_dir", base, "/var/lib/edge-agent", required=True, must_exist=False)
    trust_root = top.path("trust_root", base, "root.json", required=True, must_exist=True)
    assert state_dir is not None and trust_root is not None  # required=True
    broker = read_broker(top.table("broker", BROKER_KEYS), base)
    models = _models(top)

    p = top.table("probation", keys_of(ProbationConfig))
    dp = ProbationConfig()
    probation = ProbationConfig(
        seconds=p.number("seconds", dp.seconds, positive=False),
        max_restarts=p.integer("max_restarts", dp.max_restarts, 1),
        check_interval_s=p.number("check_interval_s", dp.check_interval_s, positive=True),
        min_requests=p.integer("min_requests", dp.min_requests, 0),
        max_error_rate=p.number("max_error_rate", dp.max_error_rate, positive=False),
        max_latency_ratio=p.number("max_latency_ratio", dp.max_latency_ratio, positive=True),
    )
    serving = read_serving(top.table("serving", SERVING_KEYS), base)
    limits = _limits(top.table("limits", keys_of(LimitsConfig)))
    report = _report(top.table("report", keys_of(ReportConfig)))
    store = read_store(top.table("store", STORE_KEYS), base)
    return AgentConfig(
        path=path,
        device_id=device_id,
        fleet=fleet,
        group=group,
        profile=profile,
        state_dir=state_dir,
        trust_root=trust_root,
        broker=broker,
        models=models,
        probation=probation,
        limits=limits,
        report=report,
        serving=serving,
        store=store,
    )


def config_schema() -> dict[str, Any]:
    """agent.toml's JSON Schema for editors (docs/schemas/agent.toml.json)."""
    return dataclass_schema(
        AgentConfig,
        "edge-agent's agent.toml",
        skip={AgentConfig: ("path",), BrokerConfig: BROKER_DERIVED, ServingConfig: SERVING_DERIVED},
        replace={(AgentConfig, "profile"): {"type": "string"}},  # an id, or a path to a .toml
    )


def load_config(path: Path) -> AgentConfig:
    """Read and validate ``agent.toml``; every problem is a one-line ConfigError.

    The file must be a regular file of at most ``MAX_CONFIG_BYTES``: a FIFO, a device
    (``/dev/zero``) or a directory is refused without being read.
    """
    document = load_toml(path, "", MAX_CONFIG_BYTES, ConfigError)
    return parse_config(document, path)


def prepare_state_dir(config: AgentConfig) -> None:
    """Create ``state_dir`` if needed and prove it writable, or say so in one line: a state
    directory that is a file, or that the agent cannot write, would fail the first update."""
    path = config.state_dir
    where = f"{config.path}: state_dir: {path}"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o750)
    except FileExistsError:
        raise ConfigError(f"{where} is not a directory; point state_dir at a directory") from None
    except OSError as e:
        raise ConfigError(
            f"{where} cannot be created ({e.strerror or e}); create it or fix the path"
        ) from None
    if not path.is_dir():
        raise ConfigError(f"{where} is not a directory; point state_dir at a directory")
    probe = path / f".write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as e:
        raise ConfigError(
            f"{where} is not writable by this user ({e.strerror or e}); fix its owner or mode"
        ) from None


def check_state_dir(config: AgentConfig) -> None:
    """For read-only commands: ``state_dir`` may be absent (nothing installed yet), but what is
    there must be a directory."""
    path = config.state_dir
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"{config.path}: state_dir: {path} is not a directory; point state_dir at a directory"
        )

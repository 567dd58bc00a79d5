"""The device agent's ``agent.toml``: read once at start, validated strictly, then frozen.

Every problem is a one-line :class:`ConfigError` naming the file and the key, because the person
reading it is at a device console or in a service log. Unknown keys are errors (with a
"did you mean"): a typo in a device config silently changes how a fleet behaves. Relative paths are
resolved against the config file's directory, so the agent behaves the same from any working
directory (systemd starts it in /).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from agent.update.http_fetch import HttpSettings, ssl_context
from edge_sdk.core import topics
from edge_sdk.core.bundle import check_name
from edge_sdk.core.chunking import MAX_CHUNK
from edge_sdk.core.profiles import HardwareProfile, resolve_profile
from edge_sdk.core.userfile import MIB, load_toml
from edge_sdk.errors import ConfigError, InputError, ProfileError

T = TypeVar("T")

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?\Z")
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# A real agent.toml is a few KiB; far more is the wrong file, and is not read whole.
MAX_CONFIG_BYTES = 1 * MIB
# Larger integers are typos or attacks: 2**53 - 1 is also the largest a JSON reader keeps exact.
MAX_INTEGER = 2**53 - 1
MAX_NUMBER = 1e9  # seconds (~31 years), ratios, milliseconds


@dataclass(frozen=True)
class BrokerConfig:
    host: str
    port: int
    tls: bool
    ca: Path | None
    cert: Path | None
    key: Path | None
    topic_prefix: str = "edge"
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    fetch_timeout_s: float = 10.0
    url: str = ""


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
class ServingConfig:
    """The local inference API: loopback TCP and/or a Unix socket."""

    listen: str = "127.0.0.1:8470"  # "" turns TCP off
    unix_socket: Path | None = None
    max_body_bytes: int = 16 << 20
    threads: int = 2  # runtime calls in parallel
    # What one predict request may cost (agent.serving.codec.Limits), checked before decoding:
    max_samples: int = 256  # samples per request
    max_decoded_bytes: int = 8 << 20  # the inputs' bytes once decoded (and .npz inflated)
    max_header_bytes: int = 16 << 10  # a request's line and headers together
    # The Open Inference Protocol over gRPC (the grpc extra): loopback HOST:PORT and/or a Unix
    # socket; off unless one is given.
    grpc_listen: str = ""
    grpc_unix_socket: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8470
    grpc_host: str = ""
    grpc_port: int = 0


@dataclass(frozen=True)
class LimitsConfig:
    max_metadata_bytes: int = 1 << 20
    max_chunk_bytes: int = 1 << 20
    max_artifact_bytes: int = 256 << 20
    min_free_bytes: int = 64 << 20  # kept free after an update
    keep_versions: int = 2  # current + previous, so a rollback has something to go back to


@dataclass(frozen=True)
class ReportConfig:
    interval_s: float = 60.0


@dataclass(frozen=True)
class TestConfig:
    """Fault injection for tests; both off by default."""

    __test__ = False  # tell pytest this is not a test class

    crash_at: str = ""
    crash_after_chunks: int = 0
    disk_full_after_bytes: int = 0  # chunk writes fail with ENOSPC past this many bytes; 0: off
    chunk_delay_s: float = 0.0  # pause after each stored chunk, to cut a download mid-way
    # Benchmark jobs: each run of a candidate of this precision takes this much longer, a
    # device on which that precision is slow (agent.bench_job).
    bench_slow_precision: str = ""
    bench_slow_ms: float = 0.0


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
    test: TestConfig
    serving: ServingConfig = ServingConfig()
    store: HttpSettings = field(default_factory=HttpSettings)


def check_identifier(value: str, what: str) -> str:
    """``edge_sdk.core.topics.check_identifier``, as a config error: ids end up inside MQTT topics
    and broker ACL patterns, where '+', '#' and '/' would turn one device's topic into a
    wildcard or another device's subtree."""
    try:
        return topics.check_identifier(value, what)
    except InputError as e:
        raise ConfigError(str(e)) from e


# --- reading ----------------------------------------------------------------------------------

_TOML_TYPES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a table",
    list: "an array",
}


def _describe(value: Any) -> str:
    kind = _TOML_TYPES.get(type(value), type(value).__name__)
    text = ("true" if value else "false") if isinstance(value, bool) else repr(value)
    return f"{kind} {text if len(text) <= 60 else text[:57] + '...'}"


class _Table:
    """One TOML table: typed getters whose errors name the file and the dotted key."""

    def __init__(self, table: Mapping[str, Any], file: str, prefix: str, keys: tuple[str, ...]):
        self._table = table
        self._file = file
        self._prefix = prefix
        # Unknown keys first: a misspelt key would otherwise be reported as a missing one.
        for key in table:
            if key not in keys:
                hint = difflib.get_close_matches(key, keys, n=1)
                advice = f"did you mean '{prefix}{hint[0]}'?" if hint else "remove it"
                raise self.fail(key, f"unknown key; {advice}")

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self._file}: {self._prefix}{key}: {message}")

    def get(self, key: str, kind: type[T]) -> T | None:
        if key not in self._table:
            return None
        value = self._table[key]
        # bool is an int subclass in Python; keepalive_s = true is a mistake, not 1.
        if isinstance(value, bool) and kind is not bool:
            ok = False
        elif kind is float and isinstance(value, int):
            value, ok = float(value), True
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise self.fail(key, f"expected {_TOML_TYPES[kind]}, got {_describe(value)}")
        return value  # type: ignore[no-any-return]

    def required(self, key: str, kind: type[T], example: str) -> T:
        value = self.get(key, kind)
        if value is None:
            raise self.fail(key, f"missing; set it, e.g. {self._prefix}{key} = {example}")
        return value

    def string(self, key: str, default: str) -> str:
        value = self.get(key, str)
        return default if value is None else value

    def integer(self, key: str, default: int, low: int, high: int | None = None) -> int:
        value = self.get(key, int)
        if value is None:
            return default
        if high is None and value > MAX_INTEGER:
            raise self.fail(key, f"must be an integer between {low} and {MAX_INTEGER}, got {value}")
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f">= {low}"
            raise self.fail(key, f"must be an integer {bounds}, got {value}")
        return value

    def number(self, key: str, default: float, *, positive: bool) -> float:
        value = self.get(key, float)
        if value is None:
            return default
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            bounds = "> 0" if positive else ">= 0"
            raise self.fail(key, f"must be a finite number {bounds}, got {value}")
        if value > MAX_NUMBER:
            # Durations this long overflow timers (Event.wait(1e300) raises) and mean "never".
            raise self.fail(key, f"must be at most {MAX_NUMBER:g}, got {value:g}")
        return value

    def identifier(self, key: str, default: str | None) -> str:
        value = (
            self.required(key, str, '"cam-01"') if default is None else self.string(key, default)
        )
        return check_identifier(value, f"{self._file}: {self._prefix}{key}")

    def path(
        self, key: str, base: Path, example: str, *, required: bool, must_exist: bool
    ) -> Path | None:
        value = self.required(key, str, f'"{example}"') if required else self.get(key, str)
        if value is None:
            return None
        if not value:
            raise self.fail(key, "must not be empty; give a path")
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base / path
        if must_exist and not path.is_file():
            problem = "is not a file" if path.exists() else "does not exist"
            raise self.fail(key, f"{path} {problem}; fix the path or put the file there")
        return path

    def table(self, key: str, keys: tuple[str, ...]) -> _Table:
        value = self.get(key, dict)
        return _Table(value or {}, self._file, f"{self._prefix}{key}.", keys)

    def tables(self, key: str, keys: tuple[str, ...]) -> list[_Table]:
        value = self.get(key, list)
        items = [] if value is None else value
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.fail(f"{key}[{i}]", f"expected a table, got {_describe(item)}")
        return [
            _Table(item, self._file, f"{self._prefix}{key}[{i}].", keys)
            for i, item in enumerate(items)
        ]


def _keys(cls: type[Any], skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(k for k in cls.__dataclass_fields__ if k not in skip)


# --- sections ---------------------------------------------------------------------------------


def _broker(t: _Table, base: Path) -> BrokerConfig:
    d = BrokerConfig(host="", port=0, tls=False, ca=None, cert=None, key=None)
    url = t.required("url", str, '"mqtts://broker.local:8883"')
    bad_url = t.fail("url", f"expected mqtt:// or mqtts://HOST[:PORT], got {url!r}; fix the URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:  # a port that is not a number or out of range
        raise bad_url from e
    host = parts.hostname or ""
    if (
        parts.scheme not in _DEFAULT_PORTS
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or not (_HOSTNAME.match(host) or _is_ip(host))
        or port == 0
    ):
        raise bad_url
    if parts.username is not None or parts.password is not None:
        raise t.fail("url", "must not carry credentials; the device authenticates with cert/key")
    tls = parts.scheme == "mqtts"

    ca = t.path("ca", base, "ca.pem", required=tls, must_exist=True)
    cert = t.path("cert", base, "device.pem", required=False, must_exist=True)
    key = t.path("key", base, "device.key", required=False, must_exist=True)
    if (cert is None) != (key is None):
        missing, present = ("key", "cert") if key is None else ("cert", "key")
        raise t.fail(missing, f"missing; broker.{present} is set; set both or neither")
    if not tls and (ca or cert):
        # Certificates beside mqtt:// mean someone believes the link is encrypted; it is not.
        raise t.fail(
            "ca" if ca else "cert", "set, but broker.url is mqtt:// (no TLS); use mqtts://"
        )

    prefix = t.string("topic_prefix", d.topic_prefix)
    levels = prefix.split("/")
    if not prefix or "" in levels or "+" in prefix or "#" in prefix or prefix.startswith("$"):
        raise t.fail(
            "topic_prefix",
            f"{prefix!r} must be non-empty topic levels joined by '/', with no '+', '#', leading "
            "'$', or leading, trailing or doubled '/'; fix it",
        )
    reconnect_min = t.number("reconnect_min_s", d.reconnect_min_s, positive=True)
    reconnect_max = t.number("reconnect_max_s", d.reconnect_max_s, positive=True)
    if reconnect_max < reconnect_min:
        raise t.fail(
            "reconnect_max_s",
            f"{reconnect_max} is below broker.reconnect_min_s ({reconnect_min}); raise it",
        )
    return BrokerConfig(
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[parts.scheme],
        tls=tls,
        ca=ca,
        cert=cert,
        key=key,
        topic_prefix=prefix,
        keepalive_s=t.integer("keepalive_s", d.keepalive_s, 5, 3600),
        reconnect_min_s=reconnect_min,
        reconnect_max_s=reconnect_max,
        fetch_timeout_s=t.number("fetch_timeout_s", d.fetch_timeout_s, positive=True),
        url=url,
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _models(top: _Table) -> tuple[ModelConfig, ...]:
    tables = top.tables("models", _keys(ModelConfig))
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


def _limits(t: _Table) -> LimitsConfig:
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


def _profile(top: _Table, base: Path) -> HardwareProfile:
    name = top.required("profile", str, '"x86-64"')
    # A profile given as a path is relative to this file, like every other path in it.
    if name.endswith(".toml") or "/" in name:
        path = Path(name).expanduser()
        name = str(path if path.is_absolute() else base / path)
    try:
        return resolve_profile(name)
    except ProfileError as e:
        raise top.fail("profile", " ".join(str(e).split())) from e


def parse_config(document: Mapping[str, Any], path: Path) -> AgentConfig:
    """Validate a parsed TOML document; ``path`` names the file and anchors relative paths."""
    file = str(path)
    base = path.absolute().parent
    top = _Table(document, file, "", _keys(AgentConfig, skip=("path",)))
    device_id = top.identifier("device_id", None)
    fleet = top.identifier("fleet", "default")
    group = top.identifier("group", "default")
    profile = _profile(top, base)
    state_dir = top.path("state_dir", base, "/var/lib/edge-agent", required=True, must_exist=False)
    trust_root = top.path("trust_root", base, "root.json", required=True, must_exist=True)
    assert state_dir is not None and trust_root is not None  # required=True
    broker = _broker(top.table("broker", _keys(BrokerConfig, skip=("host", "port", "tls"))), base)
    models = _models(top)

    p = top.table("probation", _keys(ProbationConfig))
    dp = ProbationConfig()
    probation = ProbationConfig(
        seconds=p.number("seconds", dp.seconds, positive=False),
        max_restarts=p.integer("max_restarts", dp.max_restarts, 1),
        check_interval_s=p.number("check_interval_s", dp.check_interval_s, positive=True),
        min_requests=p.integer("min_requests", dp.min_requests, 0),
        max_error_rate=p.number("max_error_rate", dp.max_error_rate, positive=False),
        max_latency_ratio=p.number("max_latency_ratio", dp.max_latency_ratio, positive=True),
    )
    serving = _serving(
        top.table("serving", _keys(ServingConfig, ("host", "port", "grpc_host", "grpc_port"))),
        base,
    )
    limits = _limits(top.table("limits", _keys(LimitsConfig)))
    r = top.table("report", _keys(ReportConfig))
    report = ReportConfig(
        interval_s=r.number("interval_s", ReportConfig().interval_s, positive=True)
    )
    store = _store(top.table("store", _keys(HttpSettings)), base)
    x = top.table("test", _keys(TestConfig))
    test = TestConfig(
        crash_at=x.string("crash_at", ""),
        crash_after_chunks=x.integer("crash_after_chunks", 0, 0),
        disk_full_after_bytes=x.integer("disk_full_after_bytes", 0, 0),
        chunk_delay_s=x.number("chunk_delay_s", 0.0, positive=False),
        bench_slow_precision=x.string("bench_slow_precision", ""),
        bench_slow_ms=x.number("bench_slow_ms", 0.0, positive=False),
    )
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
        test=test,
        serving=serving,
        store=store,
    )


def _store(t: _Table, base: Path) -> HttpSettings:
    """``[store]``: how chunks are fetched from the HTTP(S) mirrors a release names."""
    d = HttpSettings()
    fallback = t.get("fallback", bool)
    ca = t.path("ca", base, "store-ca.pem", required=False, must_exist=True)
    if ca is not None:
        try:
            ssl_context(ca)  # a file that holds no certificate fails at start, not mid-update
        except ConfigError as e:
            raise t.fail("ca", f"{ca} holds no PEM certificate; give the store's CA") from e
    return HttpSettings(
        ca=ca,
        connections=t.integer("connections", d.connections, 1, 16),
        timeout_s=t.number("timeout_s", d.timeout_s, positive=True),
        tries=t.integer("tries", d.tries, 1, 10),
        backoff_s=t.number("backoff_s", d.backoff_s, positive=False),
        fallback=d.fallback if fallback is None else fallback,
    )


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _loopback(t: _Table, key: str, default: str) -> tuple[str, str, int]:
    """``[serving] key`` as a loopback HOST:PORT: (as written, host, port); "" is off."""
    listen = t.string(key, default)
    host, port = "", 0
    if listen:
        host, _, port_text = listen.rpartition(":")
        host = host.strip("[]")
        # isdigit() alone lets through "²" and 5,000-digit numbers int() refuses to parse.
        digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
        if host not in _LOOPBACK or not digits or not 0 <= int(port_text) < 65536:
            raise t.fail(
                key,
                f"{listen!r} must be a loopback HOST:PORT (127.0.0.1, [::1] or localhost): the "
                'API serves applications on this device only; or "" to turn TCP off',
            )
        port = int(port_text)
    return listen, host, port


def _socket_path(t: _Table, key: str, example: str, base: Path) -> Path | None:
    path = t.path(key, base, example, required=False, must_exist=False)
    if path is not None:
        try:
            mode = path.lstat().st_mode
        except OSError:
            mode = stat.S_IFSOCK  # nothing there (or unreadable): the bind says what is wrong
        if not stat.S_ISSOCK(mode):
            raise t.fail(
                key,
                f"{path} exists and is not a socket; the agent never replaces it: "
                "give a path where nothing is (or where an old socket of the agent is)",
            )
    return path


def _serving(t: _Table, base: Path) -> ServingConfig:
    d = ServingConfig()
    listen, host, port = _loopback(t, "listen", d.listen)
    unix_socket = _socket_path(t, "unix_socket", "/run/edge-agent/api.sock", base)
    grpc_listen, grpc_host, grpc_port = _loopback(t, "grpc_listen", d.grpc_listen)
    grpc_unix_socket = _socket_path(t, "grpc_unix_socket", "/run/edge-agent/grpc.sock", base)
    if grpc_listen and listen and (grpc_host, grpc_port) == (host, port) and port != 0:
        raise t.fail(
            "grpc_listen",
            f"{grpc_listen!r} is also serving.listen: give HTTP and gRPC a port each",
        )
    if grpc_unix_socket is not None and grpc_unix_socket == unix_socket:
        raise t.fail(
            "grpc_unix_socket",
            f"{grpc_unix_socket} is also serving.unix_socket: give HTTP and gRPC a socket each",
        )
    return ServingConfig(
        grpc_listen=grpc_listen,
        grpc_unix_socket=grpc_unix_socket,
        grpc_host=grpc_host,
        grpc_port=grpc_port,
        listen=listen,
        unix_socket=unix_socket,
        max_body_bytes=t.integer("max_body_bytes", d.max_body_bytes, 1),
        threads=t.integer("threads", d.threads, 1, 64),
        max_samples=t.integer("max_samples", d.max_samples, 1, 1 << 20),
        max_decoded_bytes=t.integer("max_decoded_bytes", d.max_decoded_bytes, 1, 1 << 40),
        max_header_bytes=t.integer("max_header_bytes", d.max_header_bytes, 1024, 1 << 20),
        host=host,
        port=port,
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

"""What ``edge-agent``'s commands do once ``agent.cli`` has parsed the command line.

Output is plain text (or JSON with ``--json``): a device's journal and a pipe read it as well as
a terminal, and no console library rides along on the daemon's import path.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from agent.update.store import ModelStore
from edge_sdk import __version__
from edge_sdk.core.bundle import MANIFEST, MAX_MANIFEST_BYTES, Manifest, format_version
from edge_sdk.errors import ConfigError, EdgeSdkError

# Distribution names of the runtimes a bundle may need (read from metadata, never imported).
RUNTIMES = ("onnxruntime", "ai-edge-litert", "tflite-runtime")


def quiet_logging() -> None:
    """One-shot commands log errors only (``EDGE_SDK_LOG=INFO`` shows more, as for edge-sdk);
    ``run`` sets its own level once its config is known to be good."""
    level = os.environ.get("EDGE_SDK_LOG", "ERROR").upper()
    logging.basicConfig(
        level=level if level in logging.getLevelNamesMapping() else "ERROR", force=True
    )


def dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from agent.cli import CONFIG_ENV, DEFAULT_CONFIG

    if args.command == "version":
        return version(args.json_output)
    if args.command == "selftest":
        return selftest(args.bundle, args.trust_root, args.json_output)
    config = config_path(args.config, os.environ.get(CONFIG_ENV), DEFAULT_CONFIG)
    if args.command == "run":
        level = args.log_level or ("INFO" if args.verbose else "WARNING")
        return run_daemon(config, level)
    if args.command == "status":
        return status(config, args.json_output)
    parser.error(f"unknown command {args.command!r}")  # argparse's choices make this unreachable
    return 2


def config_path(given: Path | None, from_env: str | None, default: Path) -> Path:
    """``--config``, else ``$EDGE_AGENT_CONFIG``, else the default path. A config that is not
    there is one line saying where it was looked for and how to point elsewhere."""
    if given is not None:
        return given  # load_config names a missing or unreadable file itself
    path, where = (Path(from_env), "from EDGE_AGENT_CONFIG") if from_env else (default, "default")
    if not path.exists():
        raise ConfigError(
            f"no agent config at {path} ({where}): pass --config PATH or set EDGE_AGENT_CONFIG"
        )
    return path


def run_daemon(config: Path, level: str) -> int:
    from agent.config import load_config, prepare_state_dir
    from agent.daemon import Agent, install_signal_handlers
    from agent.failpoints import OFF, failpoints_from_environ

    settings = load_config(config)  # every config problem is one line, before anything starts
    failpoints = failpoints_from_environ(os.environ)  # only when set; malformed: one line, exit 2
    prepare_state_dir(settings)  # a file there, or no write access, is a config problem too
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    # python-tuf's per-signature INFO chatter; DEBUG asks for everything.
    logging.getLogger("tuf").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    if failpoints != OFF:
        logging.getLogger("agent").warning("failpoints on: %s", failpoints.to_env())
    agent = Agent(settings, failpoints=failpoints)
    install_signal_handlers(agent)
    agent.run()
    return 0


def status(config: Path, json_output: bool) -> int:
    from agent.config import check_state_dir, load_config
    from agent.reports import local_status

    settings = load_config(config)
    check_state_dir(settings)
    report = local_status(settings)
    for name, m in report["models"].items():
        # Integers for machines (anti-rollback compares them), labels for people.
        store = ModelStore(settings.state_dir, name)
        m["label"] = None if m["version"] is None else version_label(store, m["version"])
        m["installed_labels"] = [version_label(store, v) for v in m["installed"]]
    if json_output:
        _emit_json(report)
        return 0
    print(f"device {report['device']} (fleet {report['fleet']}, {report['profile']})")
    for name, m in report["models"].items():
        running = f"running {m['label']}" if m["label"] else "nothing running"
        installed = ", ".join(m["installed_labels"]) or "nothing"
        reason = f" ({m['reason']})" if m["reason"] else ""
        print(f"  {name}: {running}, installed {installed}, state {m['state']}{reason}")
    return 0


def version_label(store: ModelStore, version: int) -> str:
    """The label the user built the version with, from its installed manifest (verified at
    install); the label derived from the integer if the manifest cannot be read."""
    path = store.version_dir(version) / MANIFEST
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
        if len(data) <= MAX_MANIFEST_BYTES:
            return Manifest.from_bytes(data, str(path)).label or format_version(version)
    except (OSError, EdgeSdkError):
        pass
    return format_version(version)


def selftest(bundle: Path, trust_root: Path, json_output: bool) -> int:
    from agent.update.selftest import self_test

    result = self_test(bundle, trust_root)
    passed = result.golden.passed
    if json_output:
        _emit_json(
            {
                "name": result.name,
                "version": result.version,
                "label": format_version(result.version),
                "precision": result.precision,
                "passed": passed,
                "max_abs_error": result.golden.max_abs_error,
                "detail": result.golden.detail,
            }
        )
    else:
        verdict = "passed" if passed else "FAILED"
        label = format_version(result.version)
        print(f"self-test {verdict} {result.name} {label}: {result.golden.detail}")
    return 0 if passed else 7


def version(json_output: bool) -> int:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    from edge_sdk.core.extras import version_info  # standard library only, as a device needs

    runtimes: dict[str, str | None] = {}
    for name in RUNTIMES:
        try:
            runtimes[name] = installed(name)
        except PackageNotFoundError:
            runtimes[name] = None
    if json_output:
        # The keys edge-sdk version --json has, and the runtimes a bundle may need.
        _emit_json({**version_info("edge-agent"), "runtimes": runtimes})
        return 0
    present = ", ".join(f"{n} {v}" for n, v in runtimes.items() if v) or "none installed"
    print(f"edge-agent {__version__}")
    print(f"runtimes: {present}")
    return 0


def _emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()

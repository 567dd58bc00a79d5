"""Which distribution and extra provide what: ``version --json`` and the one line that names
the missing extra when an optional dependency is not installed.

Standard library only, on purpose: this runs where typer or rich may be missing (a device
install has neither), and must still answer in one line.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

import edge_sdk

# The distribution's name when no installed metadata says it (a source tree on PYTHONPATH).
# Installed, the name comes from the metadata, so a rename in pyproject.toml needs no edit here.
FALLBACK_DISTRIBUTION = "edgesdk-fleet"

# The extra the host commands want when a dependency is in several (onnxruntime is in [agent]
# too); the development-only extras are never the advice.
_PREFERRED = ("host",)
_NEVER = frozenset({"dev", "examples", "corpus"})

# Import names that differ from their distribution's name beyond case and -/_ (PIL is pillow).
_DISTRIBUTION_OF = {
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "grpc": "grpcio",
    "google": "protobuf",
    "yaml": "pyyaml",
    "cv2": "opencv-python",
}
_OURS = frozenset({"edge_sdk", "agent", "converters"})
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def distribution_name() -> str:
    """The name pip knows this installation by."""
    try:
        names = metadata.packages_distributions().get("edge_sdk") or []
    except Exception:  # a broken site-packages must not turn advice into a traceback
        names = []
    return names[0] if names else FALLBACK_DISTRIBUTION


def version_info(command: str) -> dict[str, str]:
    """What ``--version`` and ``version --json`` report."""
    python = sys.version_info
    return {
        "command": command,
        "version": edge_sdk.__version__,
        "distribution": distribution_name(),
        "python": f"{python.major}.{python.minor}.{python.micro}",
    }


def version_line(command: str) -> str:
    """What ``--version`` prints."""
    info = version_info(command)
    return f"{command} {info['version']} ({info['distribution']}, Python {info['python']})"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _extras_by_requirement(distribution: str) -> dict[str, list[str]]:
    """Canonical requirement name -> the extras that list it, in the metadata's order."""
    try:
        requirements = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        requirements = []
    found: dict[str, list[str]] = {}
    for requirement in requirements:
        name, extra = _REQUIREMENT.match(requirement), _EXTRA.search(requirement)
        if name and extra and extra.group(1) not in _NEVER:
            found.setdefault(_canonical(name.group(1)), []).append(extra.group(1))
    return found


def extra_for_module(module: str, distribution: str) -> str | None:
    """The extra of ``distribution`` that installs the top-level import ``module``, or None when
    no extra lists it (then a failed import is a bug, not a missing extra)."""
    top = module.split(".")[0]
    if top in _OURS:
        return None
    by_requirement = _extras_by_requirement(distribution)
    wanted = _canonical(_DISTRIBUTION_OF.get(top, top))
    extras = by_requirement.get(wanted)
    if extras is None:
        # tensorflow is installed as tensorflow-cpu, paho as paho-mqtt, mlflow as mlflow-skinny.
        extras = next(
            (found for name, found in by_requirement.items() if name.startswith(wanted + "_")),
            None,
        )
    if not extras:
        return None
    return next((e for e in _PREFERRED if e in extras), extras[0])


def missing_extra_line(error: ImportError, command: str) -> str | None:
    """The one line for an optional dependency that is not installed, or None if ``error`` is
    not that (an import error inside an installed package is a bug and says so elsewhere)."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    distribution = distribution_name()
    extra = extra_for_module(error.name, distribution)
    if extra is None:
        return None
    return (
        f"error: {command} needs the '{extra}' extra here ({error.name.split('.')[0]} is not "
        f"installed): pip install '{distribution}[{extra}]'"
    )

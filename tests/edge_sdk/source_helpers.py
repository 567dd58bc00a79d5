"""What the build-source tests (MLflow, scikit-learn, PMML) share: a CLI build checked the way
a device checks a bundle, and the one error line of a refused build."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent.update.selftest import self_test

Cli = Callable[..., tuple[int, str, str]]


def error_line(err: str) -> str:
    """The one error line (progress lines may come before it when stderr is not a terminal)."""
    (line,) = [line for line in err.splitlines() if not line.startswith("[")]
    assert line.startswith("error: ")
    return line


def verify(bundle: Path, keys: Path) -> None:
    """Signatures against the trust root, then the golden vectors in the real runtime."""
    result = self_test(bundle, keys / "root.json", threads=2)
    assert result.golden.passed, result.golden.detail


def build_verified(
    cli: Cli, model: Path | str, profile: str, keys: Path, out: Path, *options: str | Path
) -> Path:
    """``edge-sdk build`` signed with ``keys``; the bundle, verified."""
    code, _, err = cli(
        "build", model, "-p", profile, "--key", keys / "online-1.key", "--out", out, *options
    )
    assert code == 0, err
    (bundle,) = out.glob(f"*-v1-{profile}.edgebundle")
    verify(bundle, keys)
    return bundle

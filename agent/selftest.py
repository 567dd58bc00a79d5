"""Verify a bundle against the pinned root, load its artifact in the real runtime and run its
golden vectors: the gate every version passes before it may replace the running one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_sdk.bundle import read_bundle
from edge_sdk.golden import GoldenCheck, check
from edge_sdk.keys import load_trust_root
from edge_sdk.runtime import load_bundle, named_outputs
from edge_sdk.trust import verify_bundle


@dataclass(frozen=True)
class SelfTestResult:
    name: str
    version: int
    precision: str
    golden: GoldenCheck


def self_test(bundle_path: Path, trust_path: Path, threads: int = 1) -> SelfTestResult:
    root = load_trust_root(trust_path)
    bundle = read_bundle(bundle_path)
    # Trust first: nothing that fails verification is ever handed to the runtime.
    verify_bundle(root, bundle, str(bundle_path))
    m = bundle.manifest
    run = named_outputs(load_bundle(bundle, threads=threads), m.outputs)
    return SelfTestResult(
        m.name, m.version, m.precision, check(bundle.golden, run, m.golden.atol, m.golden.rtol)
    )

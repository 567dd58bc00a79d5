"""``edge-sdk build MODEL --profile A --profile B``: one release, a bundle per profile, all of one
name and version, which the fleet repository keeps as one release with a variant per profile."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edge_sdk.build import pipeline as build_module
from edge_sdk.core.bundle import read_bundle
from edge_sdk.signing.repository import Repository
from testing.factories import make_sin_model
from tests.edge_sdk.cli.progress import messages

Cli = Callable[..., tuple[int, str, str]]


def test_two_profiles_build_one_release(
    cli: Cli, tmp_path: Path, keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_build = build_module.build

    def quick(request: build_module.BuildRequest, **kw: Any) -> build_module.BuildResult:
        # Short candidate timings: what is tested is the release, not the search.
        return real_build(replace(request, timing_seconds=0.05), **kw)

    monkeypatch.setattr(build_module, "build", quick)
    out = tmp_path / "out"
    code, stdout, err = cli(
        "build",
        make_sin_model(tmp_path / "sin.onnx"),
        "--profile",
        "x86-64",
        "--profile",
        "arm64-generic",
        "--name",
        "digits",
        "--out",
        out,
        "--json",
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert result["profiles"] == ["x86-64", "arm64-generic"]
    assert result["version"] == 1 and result["label"] == "v1"
    assert [v["profile"] for v in result["variants"]] == result["profiles"]
    bundles = [read_bundle(Path(p)) for p in result["bundles"]]
    assert {(b.manifest.name, b.manifest.version) for b in bundles} == {("digits", 1)}
    assert sorted(p.name for p in out.glob("*.edgebundle")) == sorted(
        Path(p).name for p in result["bundles"]
    )

    repo = Repository.create(tmp_path / "repo", keyring)
    for bundle in bundles:
        repo.add_bundle(bundle)
    assert repo.releases() == [("digits", 1)]
    assert sorted(repo.release_variants("digits", 1)) == ["arm64-generic", "x86-64"]


def test_a_bad_or_repeated_profile_fails_before_any_build(
    cli: Cli, digits: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    for second, wanted in (("x86-64", "given twice"), ("no-such-board", "no-such-board")):
        code, _, err = cli(
            "build", digits / "model.onnx", "-p", "x86-64", "-p", second, "--out", out
        )
        assert code != 0 and wanted in err
        assert len(messages(err)) == 1, err
        assert not list(out.glob("*")) if out.exists() else True

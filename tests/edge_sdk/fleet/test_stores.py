"""``fleet publish --store``: chunks uploaded to a real S3-compatible store (SeaweedFS) or a
directory, idempotently; the mirrors signed into the release's metadata; every store problem
one line and exit 2, before anything is half-published."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.update.http_fetch import check_mirror
from edge_sdk.core.bundle import read_bundle, write_bundle
from edge_sdk.errors import InputError
from edge_sdk.fleet.stores import (
    DirStore,
    S3Store,
    StoreError,
    check_public_url,
    mirror_list,
    open_store,
)
from edge_sdk.signing.repository import MIRRORS, Repository
from testing.agents import make_bundle, matmul_model
from testing.mosquitto import Broker
from testing.seaweedfs import SeaweedS3
from tests.fuzz import mutations

Cli = Callable[..., tuple[int, str, str]]


def publish(cli: Cli, bundle: Path, repo: Path, keyring: Path, broker: Broker, *args: Any) -> Any:
    code, out, err = cli(
        "fleet", "publish", bundle, "--repo", repo, "--keys", keyring, "--broker", broker.url,
        "--json", *args,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(out)


def mirrors_of(repo: Path, keyring: Path) -> Any:
    targets = Repository.open(repo, keyring)._state().all_targets()
    manifest = targets["digits/1/manifest.json"]
    return (manifest.unrecognized_fields.get("custom") or {}).get(MIRRORS)


def test_publish_to_seaweedfs_uploads_once_and_signs_the_mirrors(
    cli: Cli, tmp_path: Path, broker: Broker, keyring: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "digits-1.edgebundle"
    write_bundle(bundle, make_bundle(keyring, 1, artifact=matmul_model(64, 1000, seed=21)))
    repo = tmp_path / "repo"
    with SeaweedS3(tmp_path / "s3") as s3:
        for key, value in s3.env().items():
            monkeypatch.setenv(key, value)
        first = publish(cli, bundle, repo, keyring, broker, "--store", "s3://chunks/fleet/a")
        assert first["store_sent_chunks"] == first["chunks"] > 0
        assert first["mirrors"] == [s3.url + "fleet/a/"]  # the endpoint's path-style default
        assert mirrors_of(repo, keyring) == [s3.url + "fleet/a/"]
        chunks = Repository.open(repo, keyring).chunks_of(read_bundle(bundle))
        sha, data = next(iter(chunks.items()))
        assert urllib.request.urlopen(f"{s3.url}fleet/a/{sha}").read() == data  # anonymous
        again = publish(
            cli, bundle, repo, keyring, broker, "--store", "s3://chunks/fleet/a",
            "--store-url", "https://cdn.example/a", "--store-url", s3.url + "fleet/a/",
        )  # fmt: skip
        assert again["store_sent_chunks"] == 0 and again["store_skipped_chunks"] == first["chunks"]
        assert mirrors_of(repo, keyring) == ["https://cdn.example/a/", s3.url + "fleet/a/"]
        # Wrong credentials and a missing bucket: one line each, exit 2.
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        code, _, err = cli(
            "fleet", "publish", bundle, "--repo", repo, "--keys", keyring,
            "--broker", broker.url, "--store", "s3://chunks/fleet/b",
        )  # fmt: skip
        assert code == 2 and err.count("\n") == 1 and "--store s3://chunks/fleet/b" in err, err
        assert "Traceback" not in err
        # A new release the store refused is not in the repository either: no later publish
        # can send metadata naming chunks that are nowhere.
        v2 = tmp_path / "digits-2.edgebundle"
        write_bundle(v2, make_bundle(keyring, 2, artifact=matmul_model(64, 1000, seed=22)))
        code, _, err = cli(
            "fleet", "publish", v2, "--repo", repo, "--keys", keyring,
            "--broker", broker.url, "--store", "s3://chunks/fleet/a",
        )  # fmt: skip
        assert code == 2 and "SignatureDoesNotMatch" in err, err
        assert Repository.open(repo, keyring).releases() == [("digits", 1)]
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
        with pytest.raises(StoreError, match="NoSuchBucket"):
            S3Store("s3://nope/x", "nope", "x/", None).upload({"a" * 64: b"x"})
    # The store is gone: one line naming the endpoint.
    with pytest.raises(StoreError, match="cannot reach"):
        S3Store("s3://chunks/x", "chunks", "x/", None).upload({"a" * 64: b"x"})
    # Nothing of a failed publish reached the broker's metadata: the mirrors are unchanged.
    assert mirrors_of(repo, keyring) == ["https://cdn.example/a/", s3.url + "fleet/a/"]


def test_publish_to_a_directory_and_option_errors(
    cli: Cli, tmp_path: Path, broker: Broker, keyring: Path
) -> None:
    bundle = tmp_path / "digits-1.edgebundle"
    write_bundle(bundle, make_bundle(keyring, 1))
    repo, www = tmp_path / "repo", tmp_path / "www"
    out = publish(
        cli, bundle, repo, keyring, broker, "--store", f"file://{www}",
        "--store-url", "https://cdn.example/chunks", "--no-broker-chunks",
    )  # fmt: skip
    assert out["sent_chunks"] == 0 and out["store_sent_chunks"] == out["chunks"]
    assert len(list(www.iterdir())) == out["chunks"]
    assert mirrors_of(repo, keyring) == ["https://cdn.example/chunks/"]
    common = ("fleet", "publish", bundle, "--repo", repo, "--keys", keyring, "--broker", broker.url)
    for args, phrase in (
        (("--store-url", "https://x/"), "need --store"),
        (("--no-broker-chunks",), "need --store"),
        (("--store", f"file://{www}"), "give --store-url"),
        (("--store", "ftp://x/y", "--store-url", "https://x/"), "expected s3://"),
        (("--store", "s3://B_/x", "--store-url", "https://x/"), "expected s3://"),
        (("--store", f"file://{www}", "--store-url", "ftp://x/"), "must be an http"),
        (("--store", f"file://{www}", "--store-url", "https://u:p@x/"), "must be an http"),
        (("--store", "s3://bucket/x", "--store-endpoint", "localhost:9000"), "--store-endpoint"),
    ):
        code, _, err = cli(*common, *args)
        assert code == 2 and err.count("\n") == 1 and phrase in err, (args, err)


def test_a_directory_store_skips_what_it_holds_and_reports_an_unwritable_path(
    tmp_path: Path,
) -> None:
    chunks = {"a" * 64: b"one", "b" * 64: b"two"}
    first = DirStore("file://x", tmp_path / "d").upload(chunks)
    assert (first.sent_chunks, first.skipped_chunks, first.sent_bytes) == (2, 0, 6)
    again = DirStore("file://x", tmp_path / "d").upload(chunks)
    assert (again.sent_chunks, again.skipped_chunks) == (0, 2)
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot create"):
        DirStore("file://y", tmp_path / "file" / "d").upload(chunks)
    with pytest.raises(InputError, match="not a chunk id"):
        DirStore("file://x", tmp_path / "d").upload({"../evil": b""})
    assert isinstance(open_store(f"file://{tmp_path}"), DirStore)
    assert isinstance(open_store("s3://bucket"), S3Store)


@given(st.text(max_size=120))
def test_a_published_mirror_url_is_one_every_agent_accepts(url: str) -> None:
    try:
        checked = check_public_url(url)
    except InputError:
        return
    assert check_mirror(checked) == checked


def test_mutated_store_urls_are_a_store_or_one_input_error() -> None:
    seeds = [b"s3://bucket/prefix", b"file:///srv/chunks", b"https://cdn.example/c/"]
    for case in mutations(seed=161, seeds=seeds, count=2000):
        text = case.decode("utf-8", "replace")
        with suppress(InputError):
            open_store(text)
        with suppress(InputError):
            mirror_list([text])

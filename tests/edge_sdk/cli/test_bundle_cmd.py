"""inspect / verify / sign / bench on a real signed bundle, and verify's distinct refusals."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_sdk.core.bundle import read_bundle, write_bundle

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def bundle(digits_build: dict[str, Any], tmp_path: Path) -> Path:
    """A private copy of the session's signed digits bundle, free to tamper with."""
    copy = tmp_path / Path(digits_build["bundle"]).name
    shutil.copy(digits_build["bundle"], copy)
    return copy


def _rewrite_member(path: Path, member: str, change: Callable[[bytes], bytes]) -> None:
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members[member] = change(members[member])
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _flip(data: bytes, at: int | None = None) -> bytes:
    i = len(data) // 2 if at is None else at
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _verify(cli: Cli, bundle: Path, root: Path) -> tuple[int, str]:
    code, _, err = cli("verify", bundle, "--trust-root", root)
    if code != 0:
        assert len(err.strip().splitlines()) == 1, err
    return code, err


def test_good_bundle_verifies(cli: Cli, bundle: Path, signing_keys: Path) -> None:
    code, out, _ = cli("verify", bundle, "--trust-root", signing_keys / "root.json", "--json")
    assert code == 0 and json.loads(out)["verified"] is True


def test_unsigned_bundle_is_refused(cli: Cli, bundle: Path, signing_keys: Path) -> None:
    b = read_bundle(bundle)
    write_bundle(bundle, b.with_signatures(None))  # type: ignore[arg-type]
    code, err = _verify(cli, bundle, signing_keys / "root.json")
    assert code == 6 and "not signed" in err


def test_wrong_key_is_refused(cli: Cli, bundle: Path, signing_keys_t2: Path) -> None:
    code, err = _verify(cli, bundle, signing_keys_t2 / "root.json")
    assert code == 6 and "does not trust" in err


def test_below_threshold_then_second_signature_passes(
    cli: Cli, digits: Path, tmp_path: Path, signing_keys_t2: Path
) -> None:
    code, out, err = cli(
        "build",
        digits / "model.onnx",
        "-p",
        "x86-64",
        "--validation",
        digits / "validation.npz",
        "--out",
        tmp_path,
        "--key",
        signing_keys_t2 / "online-1.key",
        "--json",
    )
    assert code == 0, err
    path = Path(json.loads(out)["bundle"])
    root = signing_keys_t2 / "root.json"
    code, err = _verify(cli, path, root)
    assert code == 6 and "1 of 2" in err
    assert cli("sign", path, "--key", signing_keys_t2 / "online-2.key")[0] == 0
    assert _verify(cli, path, root)[0] == 0


@pytest.mark.parametrize("member", ["model.onnx", "manifest.json", "golden.npz"])
def test_any_changed_byte_is_refused(
    cli: Cli, bundle: Path, signing_keys: Path, member: str
) -> None:
    _rewrite_member(
        bundle,
        member,
        _flip
        if member != "manifest.json"
        else (lambda d: d.replace(b'"version": 1', b'"version": 9')),
    )
    code, err = _verify(cli, bundle, signing_keys / "root.json")
    assert code == 6 and member in err


def test_edited_signed_metadata_is_refused(cli: Cli, bundle: Path, signing_keys: Path) -> None:
    _rewrite_member(
        bundle, "targets.json", lambda d: d.replace(b'"version": 1', b'"version": 2', 1)
    )
    code, err = _verify(cli, bundle, signing_keys / "root.json")
    assert code == 6 and "signature" in err


def test_trust_root_that_is_not_one(cli: Cli, bundle: Path, tmp_path: Path) -> None:
    fake = tmp_path / "root.json"
    fake.write_text("{}")
    code, err = _verify(cli, bundle, fake)
    assert code == 2 and "root.json" in err


def test_inspect_json(cli: Cli, bundle: Path) -> None:
    code, out, _ = cli("inspect", bundle, "--json")
    info = json.loads(out)
    assert code == 0 and info["signed"] is True
    assert info["manifest"]["precision"] == "int8_static"
    assert info["manifest"]["report"]["candidates"]


def test_inspect_not_a_bundle(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "x.edgebundle").write_text("nope")
    code, _, err = cli("inspect", tmp_path / "x.edgebundle")
    assert code == 5 and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("target", ["bundle", "model"])
def test_bench_json(cli: Cli, bundle: Path, digits: Path, target: str) -> None:
    path = bundle if target == "bundle" else digits / "model.onnx"
    code, out, err = cli("bench", path, "--seconds", "0.3", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert {"p50", "p95", "p99"} <= set(result["latency_ms"])
    assert result["throughput_per_s"] > 0 and result["peak_rss_mb"] > 0


def test_signed_but_inconsistent_manifest_is_refused(
    cli: Cli, bundle: Path, signing_keys: Path
) -> None:
    """A trusted key signed a manifest whose artifact hash is wrong (a broken signer): refused."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from edge_sdk.core.trust import sign_files
    from edge_sdk.signing.keys import load_signer

    b = read_bundle(bundle)
    manifest = replace(b.manifest, artifact_sha256="0" * 64)
    broken = replace(b, manifest=manifest, manifest_bytes=manifest.to_bytes(), signatures=None)
    signatures = sign_files(
        broken.signed_files(),
        [load_signer(signing_keys / "online-1.key")],
        expires=datetime.now(UTC) + timedelta(days=1),
    )
    write_bundle(bundle, broken.with_signatures(signatures))
    code, err = _verify(cli, bundle, signing_keys / "root.json")
    assert code == 6 and "does not match the hash in the signed manifest" in err


# -- Hostile bundles: one line and exit 5 (or 6), never a traceback or a memory blow-up --------


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _write_zip(
    path: Path, members: list[tuple[str, bytes]], method: int = zipfile.ZIP_STORED
) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we write
        with zipfile.ZipFile(path, "w", method) as zf:
            for name, data in members:
                zf.writestr(name, data)


def _resign(
    path: Path, keys: Path, *, golden: bytes | None = None, manifest: bytes | None = None
) -> None:
    """Rewrite ``path`` with new golden vectors and/or manifest bytes, signed by a trusted key,
    so that only the broken part can be what a command refuses."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from edge_sdk.core.trust import sign_files
    from edge_sdk.signing.keys import load_signer

    b = read_bundle(path)
    b = replace(
        b,
        golden=b.golden if golden is None else golden,
        manifest_bytes=b.manifest_bytes if manifest is None else manifest,
        signatures=None,
    )
    signatures = sign_files(
        b.signed_files(),
        [load_signer(keys / "online-1.key")],
        expires=datetime.now(UTC) + timedelta(days=1),
        custom=b.manifest.identity(),
    )
    members = {**b.signed_files(), "targets.json": signatures}
    _write_zip(path, list(members.items()))


def _all_commands(cli: Cli, bundle: Path, keys: Path) -> dict[str, tuple[int, str]]:
    """inspect, verify and the device's selftest on ``bundle``: (exit code, stderr) each, with
    each stderr checked to be one line and no traceback when the command failed."""
    from agent.cli import run as agent_run

    root = keys / "root.json"
    results = {
        "inspect": cli("inspect", bundle),
        "verify": cli("verify", bundle, "--trust-root", root),
    }
    code = agent_run(["selftest", str(bundle), "--trust", str(root)])
    results["selftest"] = (code, "", "")
    outcomes = {}
    for command, (code, _, err) in results.items():
        if command != "selftest" and code != 0:
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (command, err)
            assert "internal error" not in err, (command, err)
        outcomes[command] = (code, err)
    return outcomes


def test_duplicate_member_names_are_refused(cli: Cli, bundle: Path, signing_keys: Path) -> None:
    """A forged manifest first, the signed one last: zipfile reads the last, other tools the
    first. Refused by every command rather than verified."""
    members = _members(bundle)
    forged = members["manifest.json"].replace(b'"version": 1', b'"version": 99')
    _write_zip(bundle, [("manifest.json", forged), *members.items()])
    for command, (code, err) in _all_commands(cli, bundle, signing_keys).items():
        assert code == 5, command
        assert "two members named 'manifest.json'" in err or command == "selftest"


@pytest.mark.parametrize(
    "name",
    ["../manifest.json", "/etc/passwd", "extra.txt", "model/", "MANIFEST.JSON", "model.tflite"],
)
def test_unexpected_members_are_refused(
    cli: Cli, bundle: Path, signing_keys: Path, name: str
) -> None:
    members = _members(bundle)
    _write_zip(bundle, [*members.items(), (name, b"x")])
    for command, (code, err) in _all_commands(cli, bundle, signing_keys).items():
        assert code == 5, (command, err)


def test_encrypted_member_is_refused(cli: Cli, bundle: Path) -> None:
    """The encryption flag set on golden.npz in both its local and its central header."""
    data = bytearray(bundle.read_bytes())
    name = b"golden.npz"
    for signature, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        at = data.find(signature)
        while at >= 0:
            if data[at + name_at : at + name_at + len(name)] == name:
                data[at + flags_at] |= 0x1
            at = data.find(signature, at + 1)
    bundle.write_bytes(bytes(data))
    code, _, err = cli("inspect", bundle)
    assert code == 5 and "encrypted" in err, err


def test_golden_zip_bomb_is_refused_in_bounded_memory(
    cli: Cli, bundle: Path, signing_keys: Path
) -> None:
    """A bundle of ~1 MB whose golden.npz inflates to 256 MiB: refused on its zip header by
    inspect, verify and selftest, none of them reading it."""
    import tracemalloc

    _write_bomb(bundle, _members(bundle), "golden.npz", 256 << 20)
    assert bundle.stat().st_size < 4 << 20
    tracemalloc.start()
    try:
        outcomes = _all_commands(cli, bundle, signing_keys)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for command, (code, err) in outcomes.items():
        assert code == 5, (command, err)
    assert peak < 64 << 20, f"peak {peak >> 20} MiB"


def _write_bomb(path: Path, members: dict[str, bytes], bomb: str, size: int) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            if name != bomb:
                zf.writestr(name, data)
        info = zipfile.ZipInfo(bomb)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as out:
            chunk = bytes(1 << 20)
            for _ in range(size >> 20):
                out.write(chunk)


def _manifest_doc(bundle: Path) -> dict[str, Any]:
    return json.loads(_members(bundle)["manifest.json"])  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "edit",
    [
        "atol-1e999",
        "rtol-nan",
        "deep-report",
        "very-deep-report",
        "huge-version",
        "string-version",
        "report-a-list",
        "runtime-settings-a-string",
        "duplicate-key",
        "shape-float",
        "not-an-object",
    ],
)
def test_hostile_manifest_is_one_line(
    cli: Cli, bundle: Path, signing_keys: Path, edit: str
) -> None:
    """Each manifest is re-signed by a trusted key (a broken or compromised signer), so only
    the manifest's content can be what the commands refuse: exit 5, one line."""
    doc = _manifest_doc(bundle)
    raw: bytes | None = None
    if edit == "atol-1e999":
        raw = json.dumps(doc).replace('"atol": ', '"atol": 1e999, "x": ', 1).encode()
    elif edit == "rtol-nan":
        doc["golden"]["rtol"] = float("nan")
    elif edit == "deep-report":
        doc["report"] = {"notes": json.loads("[" * 200 + "]" * 200)}
    elif edit == "very-deep-report":
        raw = (
            json.dumps(doc)
            .replace('"report": ', '"report": ' + "[" * 100_000 + "]" * 100_000 + ', "r": ', 1)
            .encode()
        )
    elif edit == "huge-version":
        raw = json.dumps(doc).replace('"version": 1', '"version": ' + "9" * 4000, 1).encode()
    elif edit == "string-version":
        doc["version"] = "1"
    elif edit == "report-a-list":
        doc["report"] = [["candidates", 1]]
    elif edit == "runtime-settings-a-string":
        doc["runtime_settings"] = "fast"
    elif edit == "duplicate-key":
        raw = json.dumps(doc).replace('"version": 1', '"version": 1, "version": 2', 1).encode()
    elif edit == "shape-float":
        doc["inputs"][0]["shape"][1] = 1.5
    elif edit == "not-an-object":
        raw = b"[1, 2, 3]"
    manifest = raw if raw is not None else json.dumps(doc).encode()
    _write_zip(bundle, [*{**_members(bundle), "manifest.json": manifest}.items()])
    for command, (code, err) in _all_commands(cli, bundle, signing_keys).items():
        assert code == 5, (command, err)
        assert command == "selftest" or "manifest.json" in err, (command, err)


def test_inspect_shows_a_manifest_without_its_optional_fields(cli: Cli, bundle: Path) -> None:
    doc = _manifest_doc(bundle)
    for key in ("report", "runtime_settings", "artifact_tensors"):
        del doc[key]
    for tensor in doc["inputs"] + doc["outputs"]:
        del tensor["layout"]
    _write_zip(bundle, [*{**_members(bundle), "manifest.json": json.dumps(doc).encode()}.items()])
    code, out, err = cli("inspect", bundle)
    assert code == 0, err
    assert "int8_static" in out
    code, out, _ = cli("inspect", bundle, "--json")
    assert code == 0 and json.loads(out)["manifest"]["report"] == {}


def test_inspect_notes_a_build_report_it_cannot_show(cli: Cli, bundle: Path) -> None:
    doc = _manifest_doc(bundle)
    doc["report"] = {"candidates": [{"name": 3}], "profile": []}
    _write_zip(bundle, [*{**_members(bundle), "manifest.json": json.dumps(doc).encode()}.items()])
    code, out, err = cli("inspect", bundle)
    assert code == 0 and "int8_static" in out
    assert "build report" in err and len(err.strip().splitlines()) == 1


def _npz(arrays: dict[str, Any], deflate: bool = False) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    (np.savez_compressed if deflate else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def _npy_bomb(shape: tuple[int, ...], data_bytes: int) -> bytes:
    """An .npz whose input/input.npy (deflated) declares ``shape`` (float32) and inflates to a
    header plus ``data_bytes`` zero bytes."""
    import io

    import numpy as np

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo("input/input.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as out:
            out.write(header.getvalue())
            for _ in range(data_bytes >> 20):
                out.write(bytes(1 << 20))
        zf.writestr("output/logits.npy", b"")
    return buffer.getvalue()


def _broken_golden(kind: str, golden: bytes) -> bytes:
    import io

    import numpy as np

    with np.load(io.BytesIO(golden)) as npz:
        arrays = {key: npz[key] for key in npz.files}
    x, y = arrays["input/input"], arrays["output/logits"]
    if kind == "not-an-npz":
        return b"PK\x03\x04 this is not an npz"
    if kind == "truncated":
        return golden[: len(golden) // 2]
    if kind == "pickled-objects":
        return _npz({"input/input": np.array([{"a": 1}] * 8, dtype=object), "output/logits": y})
    if kind == "wrong-dtype":
        return _npz({"input/input": x.astype(np.float64), "output/logits": y})
    if kind == "wrong-shape":
        return _npz({"input/input": x[:, :, :4, :4].copy(), "output/logits": y})
    if kind == "wrong-count":
        return _npz({"input/input": x[:3], "output/logits": y[:3]})
    if kind == "wrong-name":
        return _npz({"input/image": x, "output/logits": y})
    if kind == "no-outputs":
        return _npz({"input/input": x})
    if kind == "nan-reference":
        return _npz({"input/input": x, "output/logits": y * np.nan})
    if kind == "strings":
        return _npz({"input/input": x.astype(str), "output/logits": y})
    if kind == "scalar":
        return _npz({"input/input": np.float32(1), "output/logits": y})
    if kind == "header-claims-a-terabyte":
        return _npy_bomb((1 << 38,), 1 << 20)
    if kind == "inflates-to-256-MiB":
        return _npy_bomb((64 << 20,), 256 << 20)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "not-an-npz",
        "truncated",
        "pickled-objects",
        "wrong-dtype",
        "wrong-shape",
        "wrong-count",
        "wrong-name",
        "no-outputs",
        "nan-reference",
        "strings",
        "scalar",
        "header-claims-a-terabyte",
        "inflates-to-256-MiB",
    ],
)
def test_signed_bundle_with_broken_golden_vectors_is_one_line(
    bundle: Path, signing_keys: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """Signed by a trusted key, so trust passes; the device's selftest then refuses the golden
    file with exit 5 and one line, reading at most the caps."""
    import tracemalloc

    from agent.cli import run as agent_run

    _resign(bundle, signing_keys, golden=_broken_golden(kind, read_bundle(bundle).golden))
    capsys.readouterr()
    tracemalloc.start()
    try:
        code = agent_run(["selftest", str(bundle), "--trust", str(signing_keys / "root.json")])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert code == 5, err
    assert len(err.strip().splitlines()) == 1 and "golden" in err, err
    assert peak < 96 << 20, f"peak {peak >> 20} MiB"

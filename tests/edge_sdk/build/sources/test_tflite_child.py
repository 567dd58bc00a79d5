"""The child process's half of a TFLite source (edge_sdk/build/sources/tflite_child.py), called
in-process on MediaPipe's face detector: its RESULT file holds "ok" or the one line the parent
reports, and the reference outputs are the file's own, by tensor name."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import corpus
from edge_sdk.build.sources.tflite_child import main


def test_run_writes_the_files_outputs_by_name(tmp_path: Path) -> None:
    m = corpus.get("mp-face-detector")
    feeds = m.write(tmp_path / "feeds.npz", 3, 0)
    out, result = tmp_path / "out.npz", tmp_path / "result"
    assert main(["run", str(m.path()), str(feeds), str(out), str(result)]) == 0
    assert result.read_text() == "ok"
    with np.load(out) as npz:
        assert sorted(npz.files) == ["classificators", "regressors"]
        assert npz["regressors"].shape == (3, 896, 16)


def test_failures_are_one_line_in_the_result_file(tmp_path: Path) -> None:
    m = corpus.get("mp-face-detector")
    np.savez(tmp_path / "wrong.npz", pixels=np.zeros((1, 128, 128, 3), np.float32))
    result = tmp_path / "result"
    args = [str(m.path()), str(tmp_path / "wrong.npz"), str(tmp_path / "o.npz"), str(result)]
    assert main(["run", *args]) == 1
    assert result.read_text() == "the data has no array for input input (it has pixels)"
    assert main(["resize", str(result)]) == 1
    assert result.read_text() == "unknown command resize"

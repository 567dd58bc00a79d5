"""The inference API's HTTP messages on their own (agent.serving.http_messages): the request
headers it reads and what an answer carries besides its body."""

from __future__ import annotations

import numpy as np

from agent.serving import codec
from agent.serving.http_messages import describe, encode_response, read_headers
from agent.serving.slots import ServingSlot


def test_only_the_headers_the_api_reads_are_kept_whatever_their_case() -> None:
    raw = [(b"Content-Type", b"application/json"), (b"x-other", b"1"), (b"accept", b"\xff")]
    assert read_headers(raw) == {"content-type": "application/json", "accept": "\xff"}


def test_a_slot_without_a_version_is_described_as_not_ready() -> None:
    assert describe(ServingSlot("digits")) == {"name": "digits", "version": None, "ready": False}


def test_a_v1_answer_names_its_version_and_a_bare_array_its_output() -> None:
    outputs = {"probabilities": np.zeros((1, 10), np.float32)}
    loaded = None  # a /v1 answer reads nothing of the version but the number it is given
    body, media, extra = encode_response(
        None,
        outputs,
        {"accept": codec.NPY},
        "digits",
        loaded,
        3,  # type: ignore[arg-type]
    )
    assert media == codec.NPY and body
    assert extra == {"x-model-version": "3", "x-output-name": "probabilities"}
    _, media, extra = encode_response(None, outputs, {}, "digits", loaded, 3)  # type: ignore[arg-type]
    assert media == codec.JSON and extra == {"x-model-version": "3"}

"""The error tree (edge_sdk/errors.py): grouped by what the caller does, exit codes unchanged."""

from __future__ import annotations

import inspect

import pytest

from edge_sdk import errors
from edge_sdk.errors import (
    BrokerUnavailableError,
    EdgeSdkError,
    NotDeliveredError,
    PredictError,
    RequestError,
    TransferError,
    TransportError,
    UpdateError,
    retry_later,
)

# The CLI's documented exit codes (README, "Exit codes"): regrouping must not move one.
EXIT_CODES = {
    "InputError": 2,
    "ConfigError": 2,
    "ModelFileError": 2,
    "ProfileError": 2,
    "DataError": 2,
    "KeyFileError": 2,
    "OutputError": 2,
    "UnsupportedError": 3,
    "BuildError": 4,
    "BudgetError": 4,
    "BundleError": 5,
    "TrustError": 6,
    "TamperedError": 6,
    "ReplayError": 6,
    "OversizeError": 6,
    "UpdateError": 8,
    "TransportError": 8,
    "BrokerUnavailableError": 8,
    "TransferError": 8,
    "NotDeliveredError": 8,
    "DiskSpaceError": 8,
    "SelfTestError": 8,
    "PredictError": 9,
    "RequestError": 9,
}


def classes() -> list[type[EdgeSdkError]]:
    return [
        c
        for _, c in inspect.getmembers(errors, inspect.isclass)
        if issubclass(c, EdgeSdkError) and c.__module__ == errors.__name__
    ]


@pytest.mark.parametrize("name", sorted(EXIT_CODES))
def test_exit_codes_stay_as_documented(name: str) -> None:
    assert getattr(errors, name).exit_code == EXIT_CODES[name]


def test_every_error_is_drawn_in_the_tree() -> None:
    doc = errors.__doc__ or ""
    assert [c.__name__ for c in classes() if c.__name__ not in doc] == []


def test_retry_or_give_up_is_one_question() -> None:
    # A transfer is retried by the agent and still counts as an update not finished.
    assert issubclass(TransferError, TransportError) and issubclass(TransferError, UpdateError)
    assert retry_later(BrokerUnavailableError("broker away"))
    assert retry_later(NotDeliveredError("no message"))
    assert retry_later(PredictError(503, "nothing installed yet"))
    for final in (
        errors.TrustError("bad signature"),
        errors.InputError("bad flag"),
        errors.BundleError("truncated"),
        errors.SelfTestError("golden vectors"),
        PredictError(400, "bad body"),
        ValueError("a bug"),
    ):
        assert not retry_later(final), final


def test_the_inference_apis_refusal_is_in_the_tree() -> None:
    from agent.serving import codec

    e = codec.RequestError(413, "over max_decoded_bytes")
    assert isinstance(e, PredictError) and isinstance(e, EdgeSdkError)
    assert (e.status, e.message, str(e)) == (
        413,
        "over max_decoded_bytes",
        "over max_decoded_bytes",
    )
    assert codec.RequestError is RequestError

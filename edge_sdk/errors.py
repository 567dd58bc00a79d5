"""Every error edge-sdk raises on purpose, grouped by what the caller should do about it.

The command-line tools turn any of these into one line on stderr and a non-zero exit; anything
else is a bug. Foreign errors (paho, onnx, onnxruntime, tuf, OS, HTTP) are mapped once, at the
boundary where their meaning is known, with ``raise ... from e``.

A caller decides retry-or-give-up with one question, ``isinstance(e, TransportError)`` (or
:func:`retry_later`), not with the order of its ``except`` clauses::

    EdgeSdkError                      base; ``exit_code`` is what the CLI exits with

    retry later: a peer is away or slow, nothing was decided
    ├── TransportError                the transport root, used by device and host alike (exit 8)
    │   ├── BrokerUnavailableError    the operator's tools cannot reach or keep the broker
    │   └── TransferError             an update's download: broker away, fetch timed out;
    │       │                         the agent retries, never final (also an UpdateError)
    │       └── NotDeliveredError     broker up, but a signed message never came: retried a
    │                                 bounded number of times (agent.update.updater), then final

    final: the same request fails the same way until someone changes something
    ├── InputError                    the user gave us something unusable (exit 2)
    │   ├── ModelFileError            missing, unreadable, not ONNX, truncated, invalid graph
    │   ├── ProfileError              unknown profile, malformed or invalid profile file
    │   ├── DataError                 calibration / validation data that does not fit the model
    │   ├── KeyFileError              a file that should hold a key but does not
    │   ├── OutputError               --out cannot be written (StoreError: an artifact store)
    │   └── ConfigError               agent.toml (or another config file) is invalid
    ├── UnsupportedError              valid request this version cannot do (exit 3)
    ├── BuildError                    a conversion pass or measurement failed (exit 4)
    │   └── BudgetError               no candidate stayed inside the accuracy budget
    ├── BundleError                   a bundle file is malformed or incomplete (exit 5)
    ├── TrustError                    verification failed; the reason is the message (exit 6)
    │   ├── UnsignedError             no signatures at all
    │   ├── UnknownKeyError           signed, but by no key the trust root knows
    │   ├── ThresholdError            some valid signatures, fewer than the threshold
    │   ├── TamperedError             a file's bytes do not match the signed hashes
    │   ├── ExpiredError              signed metadata past its expiry
    │   ├── ReplayError               an older version or assignment than one already trusted
    │   ├── WrongTargetError          signed for another device, profile, runtime or model
    │   └── OversizeError             more bytes than the signed length or a configured cap
    ├── UpdateError                   the agent could not finish an update (exit 8)
    │   ├── DiskSpaceError            not enough free space, or the disk filled up mid-way
    │   ├── SelfTestError             the new version failed its golden vectors or budgets
    │   └── DeviceBenchError          a device could not run a benchmark job (edge_sdk.fleet)
    └── PredictError                  the inference API refused a request (``status``, exit 9);
        │                             ``retryable`` for 429 and 503 (busy, nothing installed yet)
        └── RequestError              the device's side: what agent.serving answers with

Exit codes are the CLI's contract (README, "Exit codes") and do not change with the grouping.
"""

from __future__ import annotations


class EdgeSdkError(Exception):
    """Base of every error edge-sdk raises on purpose."""

    exit_code = 1


class InputError(EdgeSdkError):
    exit_code = 2


class ConfigError(InputError):
    pass


class ModelFileError(InputError):
    pass


class ProfileError(InputError):
    pass


class DataError(InputError):
    pass


class KeyFileError(InputError):
    pass


class OutputError(InputError):
    pass


class UnsupportedError(EdgeSdkError):
    exit_code = 3


class BuildError(EdgeSdkError):
    exit_code = 4


class BudgetError(BuildError):
    pass


class BundleError(EdgeSdkError):
    exit_code = 5


class TrustError(EdgeSdkError):
    exit_code = 6


class UnsignedError(TrustError):
    pass


class UnknownKeyError(TrustError):
    pass


class ThresholdError(TrustError):
    pass


class TamperedError(TrustError):
    pass


class ExpiredError(TrustError):
    pass


class ReplayError(TrustError):
    pass


class WrongTargetError(TrustError):
    pass


class OversizeError(TrustError):
    pass


class UpdateError(EdgeSdkError):
    exit_code = 8


class TransportError(EdgeSdkError):
    """Retry later: a broker, mirror or device is away or slow. Nothing was decided, so the
    same request may succeed when the peer is back."""

    exit_code = 8


class BrokerUnavailableError(TransportError):
    pass


class TransferError(TransportError, UpdateError):
    # Also an UpdateError: an update that cannot download is an update not finished.
    pass


class NotDeliveredError(TransferError):
    pass


class DiskSpaceError(UpdateError):
    pass


class SelfTestError(UpdateError):
    pass


class PredictError(EdgeSdkError):
    exit_code = 9

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    @property
    def retryable(self) -> bool:
        """Too many requests, or nothing installed yet: ask again later."""
        return self.status in (429, 503)


class RequestError(PredictError):
    """A request the device's inference API refuses (agent.serving): ``status`` is the HTTP
    status it answers with, ``message`` the one line it says."""


def retry_later(error: BaseException) -> bool:
    """Whether the same request may succeed later without anyone changing anything."""
    if isinstance(error, PredictError):
        return error.retryable
    return isinstance(error, TransportError)

"""Every error edge-sdk raises on purpose.

The CLI turns any of these into one line on stderr and a non-zero exit; anything else is a bug.
Foreign errors (onnx, onnxruntime, tuf, OS) are mapped here with ``raise ... from e`` at the
point where their meaning is known.

    EdgeSdkError                      base; ``exit_code`` is what the CLI exits with
    ├── InputError                    the user gave us something unusable (exit 2)
    │   ├── ModelFileError            missing, unreadable, not ONNX, truncated, invalid graph
    │   ├── ProfileError              unknown profile, malformed or invalid profile file
    │   ├── DataError                 calibration / validation data that does not fit the model
    │   ├── KeyFileError              a file that should hold a key but does not
    │   ├── OutputError               --out cannot be written
    │   └── ConfigError               agent.toml (or another config file) is invalid
    ├── UnsupportedError              valid request this version cannot do (exit 3)
    ├── BuildError                    a conversion pass or measurement failed (exit 4)
    │   └── BudgetError               no candidate stayed inside the accuracy budget
    ├── BundleError                   a bundle file is malformed or incomplete (exit 5)
    └── TrustError                    verification failed; the reason is the message (exit 6)
        ├── UnsignedError             no signatures at all
        ├── UnknownKeyError           signed, but by no key the trust root knows
        ├── ThresholdError            some valid signatures, fewer than the threshold
        ├── TamperedError             a file's bytes do not match the signed hashes
        ├── ExpiredError              signed metadata past its expiry
        ├── ReplayError               an older version or assignment than one already trusted
        ├── WrongTargetError          signed for another device, profile, runtime or model
        └── OversizeError             more bytes than the signed length or a configured cap
    UpdateError                       the agent could not finish an update (exit 8)
    ├── TransferError                 broker away, fetch timed out: retried, never final
    │   └── NotDeliveredError         broker up, but a signed message never came: retried a
    │                                 bounded number of times (agent.update.updater), then final
    ├── DiskSpaceError                not enough free space, or the disk filled up mid-way
    └── SelfTestError                 the new version failed its golden vectors or budgets
    PredictError                      the inference API refused a request (``status``, exit 9)
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


class TransferError(UpdateError):
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

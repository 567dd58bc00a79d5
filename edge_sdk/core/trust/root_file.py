"""The pinned trust root on disk: the one file both a device and the fleet's tools read to
know whose signatures count.

Device code reads it through here, not through :mod:`edge_sdk.signing.keys` (private keys, keyring
writing: the host's business; import-linter contract in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

from edge_sdk.core.trust import TrustRoot
from edge_sdk.core.userfile import read_user_file
from edge_sdk.errors import KeyFileError

ROOT_JSON = "root.json"
# A root lists a handful of keys: a few KiB. Far more is not a root, and is not read whole.
MAX_ROOT_BYTES = 1 << 20


def load_trust_root(path: Path) -> TrustRoot:
    """Read and check a root.json (a file, or a keyring directory holding one).

    Anything that is not self-signed TUF root metadata (a public key, targets metadata, an
    empty or garbled file, one over ``MAX_ROOT_BYTES``, a FIFO) is a one-line ``KeyFileError``
    naming the file.
    """
    if path.is_dir():
        path = path / ROOT_JSON
        if not path.exists():
            raise KeyFileError(
                f"{path.parent} has no {ROOT_JSON}; create a keyring with `edge-sdk keys init`"
            )
    data = read_user_file(path, "trust root", MAX_ROOT_BYTES, KeyFileError)
    if not data.strip():
        raise KeyFileError(
            f"{path} is empty, not a trust root; pass the root.json written by `edge-sdk keys init`"
        )
    return TrustRoot.from_bytes(data, str(path))

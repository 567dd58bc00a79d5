"""The operator's keys: the names callers use, in one place; the I/O around
``edge_sdk.core.trust`` lives in three modules:

    key_files.py     one key file: load a signer or a public key, write a key pair
    keyring.py       the keyring directory: its layout, ``describe_keyring``, ``init_keys``
    key_rotation.py  new root versions: ``rotate_online_key``, ``rotate_root_key``

The trust root's file is read where devices read it too (``edge_sdk.core.trust.root_file``); the
host's code keeps finding those names here.
"""

from __future__ import annotations

from edge_sdk.core.trust.root_file import MAX_ROOT_BYTES, ROOT_JSON, load_trust_root
from edge_sdk.signing.key_files import (
    MAX_KEY_FILE_BYTES,
    PASSPHRASE_ENV,
    load_public_key,
    load_signer,
)
from edge_sdk.signing.key_rotation import rotate_online_key, rotate_root_key
from edge_sdk.signing.keyring import (
    ONLINE_ROLES,
    ROLE_ORDER,
    ROOT_KEY,
    KeyFile,
    KeyringInfo,
    RoleInfo,
    describe_keyring,
    init_keys,
)

__all__ = [
    "MAX_KEY_FILE_BYTES",
    "MAX_ROOT_BYTES",
    "ONLINE_ROLES",
    "PASSPHRASE_ENV",
    "ROLE_ORDER",
    "ROOT_JSON",
    "ROOT_KEY",
    "KeyFile",
    "KeyringInfo",
    "RoleInfo",
    "describe_keyring",
    "init_keys",
    "load_public_key",
    "load_signer",
    "load_trust_root",
    "rotate_online_key",
    "rotate_root_key",
]

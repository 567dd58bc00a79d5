"""Signing: the operator's keys and the fleet's TUF repository (host only).

keys.py           key files and the keyring directory (I/O around ``edge_sdk.core.trust``)
repository.py     the TUF repository devices refresh against
release_roles.py  one delegated targets role per release
"""

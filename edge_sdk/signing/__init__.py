"""Signing: the operator's keys and the fleet's TUF repository (host only).

keys.py                the keys' public names: key_files.py (one key file), keyring.py (the
                       keyring directory, init), key_rotation.py (new root versions)
repository.py          the TUF repository devices refresh against (Repository, PublishSet)
release_targets.py     a release and its profile variants as targets with chunk lists
release_mirrors.py     the signed list of stores a release may be fetched from
release_roles.py       one delegated targets role per release
metadata_plan.py       the repository's pure core: what a change re-signs, versions, expiries
repository_layout.py   the repository's metadata/ on disk: load, write, prune
repository_signers.py  the keyring as the repository reads it: root history, online signers
"""

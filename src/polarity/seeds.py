"""Stable seeds derived from a run's seed and a name, shared by both training backends."""

from __future__ import annotations

import hashlib


def hash_seed(*parts) -> int:
    """A stable 62-bit seed from parts (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2

"""The hashes that make TEXT names unique-indexable (docs/database.md, "Conventions")."""

from __future__ import annotations

import hashlib

# None is encoded as this byte in multi-column hashes, so that None and "" differ.
_NONE = b"\xf5"


def name_hash(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8")).hexdigest()


def multi_hash(*values: str | int | None) -> str:
    """sha1 of the values joined with NUL, None encoded as 0xF5 (sourcestamps.ss_hash)."""
    parts = [_NONE if v is None else str(v).encode("utf-8") for v in values]
    return hashlib.sha1(b"\0".join(parts)).hexdigest()

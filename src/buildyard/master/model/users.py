"""A user: an identifier, optional web credentials, and per-system attributes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class User:
    uid: int
    identifier: str
    bb_username: str | None = None
    # kept out of repr so that logging a user does not leak it
    bb_password: str | None = dataclasses.field(default=None, repr=False)
    # attr_type -> attr_data, e.g. {"git": "Jane <jane@example.org>"}; one value per type
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)

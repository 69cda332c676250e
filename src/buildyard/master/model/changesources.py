"""A change source as the store knows it, with the master that runs it."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChangeSource:
    id: int
    name: str
    # the master running it, None while no master has claimed it
    masterid: int | None = None

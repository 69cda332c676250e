"""A scheduler as the store knows it, with the master that runs it."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Scheduler:
    id: int
    name: str
    # a disabled scheduler starts no builds (independent of which master owns it)
    enabled: bool = True
    # the master running it, None while no master has claimed it
    masterid: int | None = None

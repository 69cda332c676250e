"""Build steps, numbered from 0 within their build."""

from __future__ import annotations

import dataclasses

from buildyard.master.model.results import Results


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StepUrl:
    name: str
    url: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    id: int
    number: int
    # unique within the build, at most 50 characters
    name: str
    buildid: int
    # epoch seconds
    started_at: int | None
    locks_acquired_at: int | None
    complete_at: int | None
    state_string: str
    results: Results | None
    urls: tuple[StepUrl, ...] = ()
    hidden: bool = False

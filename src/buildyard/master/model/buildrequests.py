"""Build requests: one builder's share of a buildset, claimed by at most one master."""

from __future__ import annotations

import dataclasses

from buildyard.master.model.results import Results


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BuildRequest:
    id: int
    buildsetid: int
    builderid: int
    buildername: str
    priority: int
    # epoch seconds
    submitted_at: int
    complete: bool
    complete_at: int | None
    # None until complete (Buildbot stores -1 there)
    results: Results | None
    waited_for: bool
    claimed: bool
    claimed_at: int | None
    claimed_by_masterid: int | None

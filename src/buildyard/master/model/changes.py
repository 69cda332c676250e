"""Changes: one commit (or push) as reported by a change source."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from buildyard.master.model.properties import PropertyValue


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    id: int
    author: str
    committer: str | None
    comments: str
    branch: str | None
    revision: str | None
    revlink: str | None
    # epoch seconds of the commit
    when_timestamp: int
    category: str | None
    repository: str
    codebase: str
    project: str
    sourcestampid: int
    # the previous change on the same branch/repository/codebase/project (at most one today)
    parent_changeids: tuple[int, ...] = ()
    files: tuple[str, ...] = ()
    properties: Mapping[str, PropertyValue] = dataclasses.field(default_factory=dict)

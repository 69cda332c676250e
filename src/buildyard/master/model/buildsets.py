"""Buildsets: one request to build some source stamps on some builders."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from buildyard.master.model.results import Results


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Buildset:
    id: int
    external_idstring: str | None
    reason: str | None
    # epoch seconds
    submitted_at: int
    complete: bool
    complete_at: int | None
    # None until complete (Buildbot stores -1 there)
    results: Results | None
    parent_buildid: int | None
    parent_relationship: str | None
    rebuilt_buildid: int | None
    sourcestamps: tuple[int, ...] = ()


class BuildsetIds(NamedTuple):
    """What ``add_buildset`` created: the buildset and one request per builder.

    A named tuple, so ``bsid, brids = await add_buildset(...)`` works as in Buildbot.
    """

    bsid: int
    # builderid -> buildrequestid
    brids: dict[int, int]

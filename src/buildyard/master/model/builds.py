"""Builds and what they carry: properties and named data blobs."""

from __future__ import annotations

import dataclasses

from buildyard.master.model.results import Results


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Build:
    id: int
    # 1, 2, ... per builder
    number: int
    builderid: int
    buildrequestid: int
    workerid: int | None
    masterid: int
    # epoch seconds
    started_at: int
    complete_at: int | None
    locks_duration_s: int
    state_string: str
    results: Results | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BuildData:
    buildid: int
    name: str
    # of the value in bytes (kept when the value itself is not loaded)
    length: int
    source: str
    value: bytes | None

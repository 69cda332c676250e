"""Buildbot's ``buildbot.process.results`` vocabulary on top of buildyard's :class:`Results`.

Buildbot's ``Results`` is the list of lower-case names, indexed by result code
(``Results[FAILURE] == "failure"``); the codes here are buildyard's ``Results`` members, which
are those same integers.
"""

from __future__ import annotations

from buildyard.master.model.results import Results as _Results
from buildyard.master.model.results import worst

__all__ = [
    "ALL_RESULTS",
    "CANCELLED",
    "EXCEPTION",
    "FAILURE",
    "RETRY",
    "SKIPPED",
    "SUCCESS",
    "WARNINGS",
    "MultipleResults",
    "Results",
    "statusToString",
    "worst_status",
]

SUCCESS = _Results.SUCCESS
WARNINGS = _Results.WARNINGS
FAILURE = _Results.FAILURE
SKIPPED = _Results.SKIPPED
EXCEPTION = _Results.EXCEPTION
RETRY = _Results.RETRY
CANCELLED = _Results.CANCELLED

ALL_RESULTS: tuple[_Results, ...] = tuple(_Results)
Results: tuple[str, ...] = tuple(r.text for r in _Results)
MultipleResults: tuple[str, ...] = (
    "successes",
    "warnings",
    "failures",
    "skipped",
    "exceptions",
    "retries",
    "cancelled",
)


def statusToString(status: int | None, count: int = 1) -> str:
    """``"failure"`` for FAILURE (``"failures"`` when ``count`` > 1)."""
    if status is None:
        return "not finished"
    if not 0 <= status < len(Results):
        return "Invalid status"
    return MultipleResults[status] if count > 1 else Results[status]


def worst_status(a: int | None, b: int | None) -> _Results | None:
    """The worse of two results (CANCELLED worst, SKIPPED mildest); None if neither is one."""
    known = [_Results(r) for r in (a, b) if r is not None and r in ALL_RESULTS]
    return worst(known) if known else None

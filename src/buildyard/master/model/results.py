"""Build result codes, with Buildbot's integers (they travel on the wire and in the API)."""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Results(enum.IntEnum):
    SUCCESS = 0
    WARNINGS = 1
    FAILURE = 2
    SKIPPED = 3
    EXCEPTION = 4
    RETRY = 5
    CANCELLED = 6

    @property
    def text(self) -> str:
        """Buildbot's lower-case name ("success", "warnings", ...)."""
        return self.name.lower()


# How bad each result is when several are combined (Buildbot's order): SKIPPED hides behind
# anything, CANCELLED wins over everything.
_SEVERITY = {
    Results.SKIPPED: 0,
    Results.SUCCESS: 1,
    Results.WARNINGS: 2,
    Results.FAILURE: 3,
    Results.EXCEPTION: 4,
    Results.RETRY: 5,
    Results.CANCELLED: 6,
}


def worst(results: Iterable[Results]) -> Results:
    """The most severe of ``results`` (SUCCESS when there are none)."""
    return max(results, key=_SEVERITY.__getitem__, default=Results.SUCCESS)

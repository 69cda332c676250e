"""Test results reported by steps: sets of results, each result a named value."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TestResultSet:
    __test__ = False  # not a pytest test class

    id: int
    builderid: int
    buildid: int
    stepid: int
    description: str | None
    category: str
    # what ``value`` measures, e.g. "pass_fail", "duration_ns"
    value_unit: str
    tests_passed: int | None
    tests_failed: int | None
    complete: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TestResult:
    __test__ = False  # not a pytest test class

    id: int
    builderid: int
    test_result_setid: int
    test_name: str | None
    test_code_path: str | None
    line: int | None
    duration_ns: int | None
    value: str


class NewTestResult(NamedTuple):
    """One result to add; at least one of ``test_name`` and ``test_code_path`` is given."""

    test_name: str | None
    test_code_path: str | None
    line: int | None
    duration_ns: int | None
    value: str

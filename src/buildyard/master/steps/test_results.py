"""What a step records of its tests: a test result set, its results, its pass/fail counts.

``BuildStep.addTestResultSet`` makes a :class:`TestResultRecorder`; ``addTestResult`` queues
results (a synchronous call, as in Buildbot); when the step ends it writes them in batches and
completes the set with the counts its category implies (Buildbot's ``TestResultSubmitter``):
``pass_fail`` with ``boolean`` values counts passes and failures, ``pass_only`` passes,
``fail_only`` and ``code_issue`` failures; other categories leave the counts unknown (null).
"""

from __future__ import annotations

from typing import Any

import structlog

from buildyard.master.data.updates import Updates

log = structlog.get_logger(__name__)

# results written in one go
BATCH = 3000


class TestResultRecorder:
    __test__ = False  # not a pytest test class

    def __init__(
        self, *, updates: Updates, builderid: int, setid: int, category: str, value_unit: str
    ) -> None:
        self._updates = updates
        self._builderid = builderid
        self.setid = setid
        self._pending: list[dict[str, Any]] = []
        self._category, self._value_unit = category, value_unit
        counted = (category == "pass_fail" and value_unit == "boolean") or category in (
            "pass_only",
            "fail_only",
            "code_issue",
        )
        self.tests_passed: int | None = 0 if counted else None
        self.tests_failed: int | None = 0 if counted else None

    def add(
        self,
        value: str,
        *,
        test_name: str | None = None,
        test_code_path: str | None = None,
        line: int | None = None,
        duration_ns: int | None = None,
    ) -> None:
        """Queue one result (types checked now, as Buildbot does: a wrong one is the step's
        bug, raised where it is made)."""
        if not isinstance(value, str):
            raise TypeError("value must be a string")
        result: dict[str, Any] = {"value": value}
        for key, given, kind in (
            ("test_name", test_name, str),
            ("test_code_path", test_code_path, str),
            ("line", line, int),
            ("duration_ns", duration_ns, int),
        ):
            if given is None:
                continue
            if not isinstance(given, kind):
                raise TypeError(f"{key} must be a {kind.__name__}")
            result[key] = given
        if "test_name" not in result and "test_code_path" not in result:
            raise ValueError("a test result needs a test_name or a test_code_path")
        self._count(value)
        self._pending.append(result)

    def _count(self, value: str) -> None:
        if self.tests_passed is None or self.tests_failed is None:
            return
        if self._category == "pass_only":
            self.tests_passed += 1
        elif self._category in ("fail_only", "code_issue"):
            self.tests_failed += 1
        else:  # pass_fail of booleans: "1" passed, "0" failed
            try:
                passed = bool(int(value))
            except ValueError:
                log.warning("test_result_not_boolean", setid=self.setid, value=value)
                return
            if passed:
                self.tests_passed += 1
            else:
                self.tests_failed += 1

    async def flush(self) -> None:
        """Write the queued results."""
        while self._pending:
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            await self._updates.add_test_results(self._builderid, self.setid, batch)

    async def finish(self) -> None:
        """Write the rest and complete the set with its counts."""
        await self.flush()
        await self._updates.complete_test_result_set(
            self.setid, tests_passed=self.tests_passed, tests_failed=self.tests_failed
        )

"""Build data and test results through the write path, and the events test result sets get."""

from __future__ import annotations

import pytest

from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import TestResultSetAlreadyComplete
from buildyard.master.mq.local import LocalMQ
from buildyard.testing.clock import FakeClock
from tests.master.data.pipeline_rows import write_rows
from tests.master.data.test_masters_updates import drain


async def test_a_test_result_set_is_announced_new_then_completed(
    updates: Updates, mq: LocalMQ, database: Database, clock: FakeClock
) -> None:
    rows = await write_rows(updates, database, clock)
    sub = mq.subscribe(("test_result_sets", None, None))
    setid = await updates.add_test_result_set(
        builderid=rows.b1,
        buildid=rows.build_ok,
        stepid=rows.test_step,
        description="unit",
        category="pass_fail",
        value_unit="boolean",
    )
    await updates.add_test_results(rows.b1, setid, [{"test_name": "a", "value": "1"}])
    await updates.complete_test_result_set(setid, tests_passed=1, tests_failed=0)
    entity = {
        "test_result_setid": setid,
        "builderid": rows.b1,
        "buildid": rows.build_ok,
        "stepid": rows.test_step,
        "description": "unit",
        "category": "pass_fail",
        "value_unit": "boolean",
        "tests_passed": None,
        "tests_failed": None,
        "complete": False,
    }
    completed = {**entity, "tests_passed": 1, "tests_failed": 0, "complete": True}
    assert drain(sub) == [
        (("test_result_sets", str(setid), "new"), entity),
        (("test_result_sets", str(setid), "completed"), completed),
    ]
    with pytest.raises(TestResultSetAlreadyComplete):
        await updates.complete_test_result_set(setid)
    with pytest.raises(ValueError, match="test_name or a test_code_path"):
        await updates.add_test_results(rows.b1, setid, [{"line": 3, "value": "1"}])


async def test_build_data_is_replaced_by_name(
    updates: Updates, database: Database, clock: FakeClock
) -> None:
    rows = await write_rows(updates, database, clock)
    await updates.set_build_data(rows.build_ok, "d", b"one", "s1")
    await updates.set_build_data(rows.build_ok, "d", b"three", "s2")
    found = await database.builds.get_build_data(rows.build_ok, "d")
    assert found is not None
    assert (found.value, found.length, found.source) == (b"three", 5, "s2")
    bare = await database.builds.get_build_data(rows.build_ok, "d", with_value=False)
    assert bare is not None
    assert (bare.value, bare.length) == (None, 5)

"""The test results connector on both backends."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db import test_results as db_test_results
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import TestResultSetAlreadyComplete
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.master.model import test_results as model
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows


def _repo(database: Database, clock: FakeClock) -> db_test_results.TestResultsRepository:
    return db_test_results.TestResultsRepository(engine=database.engine, clock=clock)


async def _set(
    repo: db_test_results.TestResultsRepository, ids: tuple[int, int, int], category: str = "unit"
) -> int:
    builderid, buildid, stepid = ids
    return await repo.add_test_result_set(
        builderid=builderid,
        buildid=buildid,
        stepid=stepid,
        description="pytest",
        category=category,
        value_unit="pass_fail",
    )


async def test_result_sets(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    ids = await _rows.add_running_step(database)
    a = await _set(repo, ids)
    b = await _set(repo, ids, "lint")
    got = await repo.get_test_result_set(a)
    assert got == model.TestResultSet(
        id=a,
        builderid=ids[0],
        buildid=ids[1],
        stepid=ids[2],
        description="pytest",
        category="unit",
        value_unit="pass_fail",
        tests_passed=None,
        tests_failed=None,
        complete=False,
    )
    await repo.complete_test_result_set(a, tests_passed=10, tests_failed=2)
    done = await repo.get_test_result_set(a)
    assert done is not None and (done.complete, done.tests_passed, done.tests_failed) == (
        True,
        10,
        2,
    )
    with pytest.raises(TestResultSetAlreadyComplete):
        await repo.complete_test_result_set(a, tests_passed=0)
    with pytest.raises(TestResultSetAlreadyComplete):
        await repo.complete_test_result_set(9999)
    assert [s.id for s in await repo.get_test_result_sets(buildid=ids[1])] == [a, b]
    assert [s.id for s in await repo.get_test_result_sets(complete=False)] == [b]
    assert [s.id for s in await repo.get_test_result_sets(complete=True, stepid=ids[2])] == [a]
    assert await repo.get_test_result_sets(builderid=ids[0] + 1) == []
    lint = QueryOptions(filters=(Filter(field="category", op=Op.EQ, values=("lint",)),))
    assert [s.id for s in await repo.get_test_result_sets(options=lint)] == [b]
    assert await repo.get_test_result_set(9999) is None


async def test_add_and_get_results(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    ids = await _rows.add_running_step(database)
    setid = await _set(repo, ids)
    builderid = ids[0]
    await repo.add_test_results(
        builderid,
        setid,
        [
            model.NewTestResult("test_a", "tests/a.py", 10, 1500, "pass"),
            ("test_b", "tests/a.py", 20, None, "fail"),
            ("test_a", None, None, None, "pass"),
            (None, "tests/c.py", None, 7, "skip"),
        ],
    )
    got = await repo.get_test_results(setid)
    assert [(r.test_name, r.test_code_path, r.line, r.duration_ns, r.value) for r in got] == [
        ("test_a", "tests/a.py", 10, 1500, "pass"),
        ("test_b", "tests/a.py", 20, None, "fail"),
        ("test_a", None, None, None, "pass"),
        (None, "tests/c.py", None, 7, "skip"),
    ]
    assert all(r.builderid == builderid and r.test_result_setid == setid for r in got)
    single = await repo.get_test_result(got[1].id)
    assert single == got[1]
    # names and paths are stored once per builder, and found again by later additions
    await repo.add_test_results(builderid, setid, [("test_b", "tests/a.py", None, None, "pass")])
    async with database.reading() as c:
        names = (await c.execute(sa.select(t.test_names.c.name))).scalars()
        paths = (await c.execute(sa.select(t.test_code_paths.c.path))).scalars()
        sorted_names, sorted_paths = sorted(names), sorted(paths)
    assert sorted_names == ["test_a", "test_b"]
    assert sorted_paths == ["tests/a.py", "tests/c.py"]
    assert await repo.get_test_names(builderid) == ["test_a", "test_b"]
    assert await repo.get_test_names(builderid, name_prefix="test_b") == ["test_b"]
    assert await repo.get_test_code_paths(builderid, path_prefix="tests/c") == ["tests/c.py"]
    failed = QueryOptions(filters=(Filter(field="value", op=Op.EQ, values=("fail",)),))
    assert [r.test_name for r in await repo.get_test_results(setid, failed)] == ["test_b"]
    # (NULLs sort differently on the two backends: keep them out of the ordering)
    by_name = QueryOptions(
        filters=(Filter(field="test_code_path", op=Op.EQ, values=("tests/a.py",)),),
        order=("-test_name", "test_resultid"),
        limit=2,
    )
    assert [r.value for r in await repo.get_test_results(setid, by_name)] == ["fail", "pass"]


async def test_names_are_per_builder(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    ids = await _rows.add_running_step(database)
    other_builder = await _rows.add_builder(database, "other")
    setid = await _set(repo, ids)
    await repo.add_test_results(ids[0], setid, [("t", None, None, None, "1")])
    await repo.add_test_results(other_builder, setid, [("t", None, None, None, "2")])
    async with database.reading() as c:
        rows = (await c.execute(sa.select(t.test_names.c.builderid, t.test_names.c.name))).all()
    assert sorted(tuple(r) for r in rows) == sorted([(ids[0], "t"), (other_builder, "t")])
    assert [r.test_name for r in await repo.get_test_results(setid)] == ["t", "t"]


async def test_many_results_and_validation(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    ids = await _rows.add_running_step(database)
    setid = await _set(repo, ids)
    results = [(f"test_{i}", None, i, None, str(i)) for i in range(1200)]
    await repo.add_test_results(ids[0], setid, results)
    got = await repo.get_test_results(setid)
    assert [(r.test_name, r.line) for r in got] == [(f"test_{i}", i) for i in range(1200)]
    with pytest.raises(ValueError, match="test_name or a test_code_path"):
        await repo.add_test_results(ids[0], setid, [(None, None, 1, None, "x")])
    await repo.add_test_results(ids[0], setid, [])
    assert len(await repo.get_test_results(setid)) == 1200

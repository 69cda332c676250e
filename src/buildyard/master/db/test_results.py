"""The test results connector: result sets of a step, and the results in them.

Test names and code paths are stored once per builder (``test_names``, ``test_code_paths``) and
results refer to them. Those tables have no unique index (their TEXT columns are too long to
index uniquely everywhere), so two concurrent writers on PostgreSQL may each add the same name;
readers then use the lowest id, and results stay correct either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.base import Repository, inserted_id
from buildyard.master.db.errors import TestResultSetAlreadyComplete
from buildyard.master.db.query import QueryOptions, apply
from buildyard.master.model.test_results import TestResult, TestResultSet

# one result to add: (test_name, test_code_path, line, duration_ns, value);
# model.test_results.NewTestResult is a named version of it
NewResult = tuple[str | None, str | None, int | None, int | None, str]

_sets, _res = t.test_result_sets, t.test_results
_names, _paths = t.test_names, t.test_code_paths
_SET_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "test_result_setid": _sets.c.id,
    "builderid": _sets.c.builderid,
    "buildid": _sets.c.buildid,
    "stepid": _sets.c.stepid,
    "description": _sets.c.description,
    "category": _sets.c.category,
    "value_unit": _sets.c.value_unit,
    "tests_passed": _sets.c.tests_passed,
    "tests_failed": _sets.c.tests_failed,
    "complete": _sets.c.complete,
}
_RESULT_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "test_resultid": _res.c.id,
    "builderid": _res.c.builderid,
    "test_result_setid": _res.c.test_result_setid,
    "test_name": _names.c.name,
    "test_code_path": _paths.c.path,
    "line": _res.c.line,
    "duration_ns": _res.c.duration_ns,
    "value": _res.c.value,
}
# bound on IN (...) lists
_BATCH = 500


def _set(row: sa.Row[Any]) -> TestResultSet:
    return TestResultSet(
        id=row.id,
        builderid=row.builderid,
        buildid=row.buildid,
        stepid=row.stepid,
        description=row.description,
        category=row.category,
        value_unit=row.value_unit,
        tests_passed=row.tests_passed,
        tests_failed=row.tests_failed,
        complete=bool(row.complete),
    )


def _sets_filtered(
    builderid: int | None, buildid: int | None, stepid: int | None, complete: bool | None
) -> sa.Select[Any]:
    stmt = sa.select(_sets)
    for column, wanted in (
        (_sets.c.builderid, builderid),
        (_sets.c.buildid, buildid),
        (_sets.c.stepid, stepid),
    ):
        if wanted is not None:
            stmt = stmt.where(column == wanted)
    if complete is not None:
        stmt = stmt.where(_sets.c.complete == int(complete))
    return stmt


def _select_results() -> sa.Select[Any]:
    return sa.select(_res, _names.c.name, _paths.c.path).select_from(
        _res.outerjoin(_names, _names.c.id == _res.c.test_nameid).outerjoin(
            _paths, _paths.c.id == _res.c.test_code_pathid
        )
    )


def _result(row: sa.Row[Any]) -> TestResult:
    return TestResult(
        id=row.id,
        builderid=row.builderid,
        test_result_setid=row.test_result_setid,
        test_name=row.name,
        test_code_path=row.path,
        line=row.line,
        duration_ns=row.duration_ns,
        value=row.value,
    )


def _sets_for_commits(commitids: Sequence[int]) -> sa.Select[Any]:
    co, ss, bss = t.codebase_commits, t.sourcestamps, t.buildset_sourcestamps
    br, b = t.buildrequests, t.builds
    buildids = (
        sa.select(b.c.id)
        .select_from(co)
        .join(ss, ss.c.revision == co.c.revision)
        .join(bss, bss.c.sourcestampid == ss.c.id)
        .join(br, br.c.buildsetid == bss.c.buildsetid)
        .join(b, b.c.buildrequestid == br.c.id)
        .where(co.c.id.in_(list(commitids)))
    )
    return sa.select(_sets).where(_sets.c.buildid.in_(buildids))


class TestResultsRepository(Repository):
    __test__ = False  # not a pytest test class

    async def add_test_result_set(
        self,
        *,
        builderid: int,
        buildid: int,
        stepid: int,
        description: str | None,
        category: str,
        value_unit: str,
        conn: AsyncConnection | None = None,
    ) -> int:
        async with self._write(conn) as c:
            result = await c.execute(
                _sets.insert().values(
                    builderid=builderid,
                    buildid=buildid,
                    stepid=stepid,
                    description=description,
                    category=category,
                    value_unit=value_unit,
                    complete=0,
                )
            )
            return inserted_id(result)

    async def complete_test_result_set(
        self,
        test_result_setid: int,
        *,
        tests_passed: int | None = None,
        tests_failed: int | None = None,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Mark the set complete with its counts; :class:`TestResultSetAlreadyComplete` if it
        was complete already or does not exist."""
        values: dict[str, int] = {"complete": 1}
        if tests_passed is not None:
            values["tests_passed"] = tests_passed
        if tests_failed is not None:
            values["tests_failed"] = tests_failed
        async with self._write(conn) as c:
            done = await c.execute(
                _sets.update()
                .where(_sets.c.id == test_result_setid, _sets.c.complete == 0)
                .values(**values)
            )
            if done.rowcount == 0:
                raise TestResultSetAlreadyComplete(
                    f"test result set {test_result_setid} is already complete or unknown"
                )

    async def get_test_result_set(
        self, test_result_setid: int, *, conn: AsyncConnection | None = None
    ) -> TestResultSet | None:
        async with self._read(conn) as c:
            stmt = sa.select(_sets).where(_sets.c.id == test_result_setid)
            row = (await c.execute(stmt)).first()
        return _set(row) if row else None

    async def get_test_result_sets(
        self,
        *,
        builderid: int | None = None,
        buildid: int | None = None,
        stepid: int | None = None,
        complete: bool | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[TestResultSet]:
        """Sets matching every given criterion, then ``options`` (by id when unordered)."""
        stmt = _sets_filtered(builderid, buildid, stepid, complete)
        stmt = apply(stmt, options, _SET_COLUMNS, default_order=[_sets.c.id])
        async with self._read(conn) as c:
            return [_set(r) for r in await c.execute(stmt)]

    async def count_test_result_sets(
        self,
        *,
        builderid: int | None = None,
        buildid: int | None = None,
        stepid: int | None = None,
        complete: bool | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        """How many sets get_test_result_sets would return without paging."""
        stmt = _sets_filtered(builderid, buildid, stepid, complete)
        return await self._count(stmt, options, _SET_COLUMNS, conn)

    async def get_test_result_sets_for_commits(
        self,
        commitids: Sequence[int],
        *,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[TestResultSet]:
        """Sets of builds of a buildset on a stamp at the revision of one of ``commitids``,
        each once (by id when unordered). As Buildbot, by revision alone: a stamp names no
        codebase row."""
        stmt = _sets_for_commits(commitids)
        stmt = apply(stmt, options, _SET_COLUMNS, default_order=[_sets.c.id])
        async with self._read(conn) as c:
            return [_set(r) for r in await c.execute(stmt)]

    async def count_test_result_sets_for_commits(
        self,
        commitids: Sequence[int],
        *,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        return await self._count(_sets_for_commits(commitids), options, _SET_COLUMNS, conn)

    async def add_test_results(
        self,
        builderid: int,
        test_result_setid: int,
        results: Sequence[NewResult],
        *,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Add results to a set, finding or creating their test names and code paths."""
        for name, path, *_ in results:
            if name is None and path is None:
                raise ValueError("a test result needs a test_name or a test_code_path")
        if not results:
            return
        async with self._write(conn) as c:
            name_ids = await self._find_or_add(
                c, _names, _names.c.name, builderid, {r[0] for r in results if r[0] is not None}
            )
            path_ids = await self._find_or_add(
                c, _paths, _paths.c.path, builderid, {r[1] for r in results if r[1] is not None}
            )
            await c.execute(
                _res.insert(),
                [
                    {
                        "builderid": builderid,
                        "test_result_setid": test_result_setid,
                        "test_nameid": None if name is None else name_ids[name],
                        "test_code_pathid": None if path is None else path_ids[path],
                        "line": line,
                        "duration_ns": duration_ns,
                        "value": value,
                    }
                    for name, path, line, duration_ns, value in results
                ],
            )

    async def _find_or_add(
        self,
        c: AsyncConnection,
        table: sa.Table,
        column: sa.Column[str],
        builderid: int,
        values: Iterable[str],
    ) -> dict[str, int]:
        """value -> id in ``table`` for this builder, adding the missing values."""
        ids: dict[str, int] = {}
        pending = sorted(values)
        for start in range(0, len(pending), _BATCH):
            batch = pending[start : start + _BATCH]
            ids |= await self._lookup(c, table, column, builderid, batch)
            missing = [v for v in batch if v not in ids]
            if missing:
                await c.execute(
                    table.insert(), [{"builderid": builderid, column.name: v} for v in missing]
                )
                ids |= await self._lookup(c, table, column, builderid, missing)
        return ids

    async def _lookup(
        self,
        c: AsyncConnection,
        table: sa.Table,
        column: sa.Column[str],
        builderid: int,
        values: Sequence[str],
    ) -> dict[str, int]:
        stmt = (
            sa.select(column, sa.func.min(table.c.id))
            .where(table.c.builderid == builderid, column.in_(values))
            .group_by(column)
        )
        return {value: int(id_) for value, id_ in await c.execute(stmt)}

    async def get_test_result(
        self, test_resultid: int, *, conn: AsyncConnection | None = None
    ) -> TestResult | None:
        async with self._read(conn) as c:
            row = (await c.execute(_select_results().where(_res.c.id == test_resultid))).first()
        return _result(row) if row else None

    async def get_test_results(
        self,
        test_result_setid: int,
        options: QueryOptions | None = None,
        *,
        conn: AsyncConnection | None = None,
    ) -> list[TestResult]:
        """The results of one set, then ``options`` (in insertion order when unordered)."""
        stmt = _select_results().where(_res.c.test_result_setid == test_result_setid)
        stmt = apply(stmt, options, _RESULT_COLUMNS, default_order=[_res.c.id])
        async with self._read(conn) as c:
            return [_result(r) for r in await c.execute(stmt)]

    async def count_test_results(
        self,
        test_result_setid: int,
        options: QueryOptions | None = None,
        *,
        conn: AsyncConnection | None = None,
    ) -> int:
        """How many results get_test_results would return without paging."""
        stmt = _select_results().where(_res.c.test_result_setid == test_result_setid)
        return await self._count(stmt, options, _RESULT_COLUMNS, conn)

    async def get_test_names(
        self,
        builderid: int,
        *,
        name_prefix: str | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[str]:
        """The builder's known test names, sorted."""
        stmt = sa.select(_names.c.name).where(_names.c.builderid == builderid).distinct()
        if name_prefix is not None:
            stmt = stmt.where(_names.c.name.startswith(name_prefix, autoescape=True))
        async with self._read(conn) as c:
            return sorted((await c.execute(stmt)).scalars())

    async def get_test_code_paths(
        self,
        builderid: int,
        *,
        path_prefix: str | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[str]:
        """The builder's known test code paths, sorted."""
        stmt = sa.select(_paths.c.path).where(_paths.c.builderid == builderid).distinct()
        if path_prefix is not None:
            stmt = stmt.where(_paths.c.path.startswith(path_prefix, autoescape=True))
        async with self._read(conn) as c:
            return sorted((await c.execute(stmt)).scalars())

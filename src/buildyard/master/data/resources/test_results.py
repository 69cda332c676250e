"""The ``test_result_set`` and ``test_result`` resources: what steps report of their tests.

A step adds a set (``updates.add_test_result_set``), results into it, then completes it with its
counts. Sets are listed for everything, a builder, a build or a step; a set's results under
``test_result_sets/<id>/results``. Filters, order and paging run in SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from buildyard.master.data import shapes
from buildyard.master.data.resources.base import (
    INT,
    STR,
    Collection,
    Endpoint,
    Item,
    ResourceType,
    nullable,
    page,
)
from buildyard.master.data.resources.builds import builder_id
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.db.query import QueryOptions
from buildyard.master.model.test_results import TestResult

TEST_RESULT_SET = ResourceType(
    name="test_result_set",
    plural="test_result_sets",
    fields={
        "test_result_setid": FieldType.INTEGER,
        "builderid": FieldType.INTEGER,
        "buildid": FieldType.INTEGER,
        "stepid": FieldType.INTEGER,
        "description": FieldType.STRING,
        "category": FieldType.STRING,
        "value_unit": FieldType.STRING,
        "tests_passed": FieldType.INTEGER,
        "tests_failed": FieldType.INTEGER,
        "complete": FieldType.BOOLEAN,
    },
    json={
        "description": nullable(STR),
        "tests_passed": nullable(INT),
        "tests_failed": nullable(INT),
    },
)
TEST_RESULT = ResourceType(
    name="test_result",
    plural="test_results",
    fields={
        "test_resultid": FieldType.INTEGER,
        "builderid": FieldType.INTEGER,
        "test_result_setid": FieldType.INTEGER,
        "test_name": FieldType.STRING,
        "test_code_path": FieldType.STRING,
        "line": FieldType.INTEGER,
        "duration_ns": FieldType.INTEGER,
        "value": FieldType.STRING,
    },
    json={
        "test_name": nullable(STR),
        "test_code_path": nullable(STR),
        "line": nullable(INT),
        "duration_ns": nullable(INT),
    },
)
# every field is a column (db.test_results) under the same name
_SET_FIELDS = {f: f for f in TEST_RESULT_SET.fields}
_RESULT_FIELDS = {f: f for f in TEST_RESULT.fields}


def _result_to_api(r: TestResult) -> Item:
    return {
        "test_resultid": r.id,
        "builderid": r.builderid,
        "test_result_setid": r.test_result_setid,
        "test_name": r.test_name,
        "test_code_path": r.test_code_path,
        "line": r.line,
        "duration_ns": r.duration_ns,
        "value": r.value,
    }


async def _sets(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    scope: dict[str, Any] = {"buildid": kw.get("buildid"), "stepid": kw.get("stepid")}
    if "builderid" in kw or "buildername" in kw:
        scope["builderid"] = await builder_id(db, kw)
        if scope["builderid"] is None:
            return Collection(items=[], total=0)

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:  # rows and total from one snapshot
            rows = await db.test_results.get_test_result_sets(**scope, options=options, conn=conn)
            total = await db.test_results.count_test_result_sets(
                **scope, options=options, conn=conn
            )
        return [shapes.test_result_set(s) for s in rows], total

    async def everything() -> list[Item]:
        return [
            shapes.test_result_set(s) for s in await db.test_results.get_test_result_sets(**scope)
        ]

    return await page(spec, _SET_FIELDS, in_db, everything)


async def _set(db: Database, kw: Mapping[str, Any]) -> Item | None:
    s = await db.test_results.get_test_result_set(kw["test_result_setid"])
    return None if s is None else shapes.test_result_set(s)


async def _results(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    setid = kw["test_result_setid"]

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:
            rows = await db.test_results.get_test_results(setid, options, conn=conn)
            total = await db.test_results.count_test_results(setid, options, conn=conn)
        return [_result_to_api(r) for r in rows], total

    async def everything() -> list[Item]:
        return [_result_to_api(r) for r in await db.test_results.get_test_results(setid)]

    return await page(spec, _RESULT_FIELDS, in_db, everything)


ENDPOINTS = (
    Endpoint(pattern=("test_result_sets",), rtype=TEST_RESULT_SET, collection=_sets),
    Endpoint(
        pattern=("builders", "n:builderid", "test_result_sets"),
        rtype=TEST_RESULT_SET,
        collection=_sets,
    ),
    Endpoint(
        pattern=("builders", "i:buildername", "test_result_sets"),
        rtype=TEST_RESULT_SET,
        collection=_sets,
    ),
    Endpoint(
        pattern=("builds", "n:buildid", "test_result_sets"), rtype=TEST_RESULT_SET, collection=_sets
    ),
    Endpoint(
        pattern=("steps", "n:stepid", "test_result_sets"), rtype=TEST_RESULT_SET, collection=_sets
    ),
    Endpoint(pattern=("test_result_sets", "n:test_result_setid"), rtype=TEST_RESULT_SET, item=_set),
    Endpoint(
        pattern=("test_result_sets", "n:test_result_setid", "results"),
        rtype=TEST_RESULT,
        collection=_results,
    ),
)

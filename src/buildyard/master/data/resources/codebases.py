"""The ``codebase``, ``branch`` and ``commit`` resources, and ``commit_graph``: where two
commits' histories meet.

A project's codebases (``updates.find_codebase_id``) have branches (``updates.update_branch``)
pointing at commits (``updates.add_commit``); each commit names its first parent. Lists filter,
order and page in SQL. As in Buildbot, the commit-range paths look the commits up by id alone:
the codebase in the path is not checked.
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
    list_of,
    nullable,
    page,
)
from buildyard.master.data.resources.test_results import TEST_RESULT_SET
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.db.query import QueryOptions

CODEBASE = ResourceType(
    name="codebase",
    plural="codebases",
    fields={
        "codebaseid": FieldType.INTEGER,
        "projectid": FieldType.INTEGER,
        "name": FieldType.IDENTIFIER,
        "slug": FieldType.IDENTIFIER,
    },
)
BRANCH = ResourceType(
    name="branch",
    plural="branches",
    fields={
        "branchid": FieldType.INTEGER,
        "codebaseid": FieldType.INTEGER,
        "name": FieldType.STRING,
        "commitid": FieldType.INTEGER,
        "last_timestamp": FieldType.INTEGER,
    },
    # Buildbot declares commitid an integer, yet a branch whose head is unknown has none
    json={"commitid": nullable(INT)},
)
COMMIT = ResourceType(
    name="commit",
    plural="commits",
    fields={
        "commitid": FieldType.INTEGER,
        "codebaseid": FieldType.INTEGER,
        "author": FieldType.STRING,
        "committer": FieldType.STRING,
        "comments": FieldType.STRING,
        "when_timestamp": FieldType.INTEGER,
        "revision": FieldType.STRING,
        "parent_commitid": FieldType.INTEGER,
    },
    json={"committer": nullable(STR), "parent_commitid": nullable(INT)},
)
COMMIT_GRAPH = ResourceType(
    name="commit_graph",
    plural="commit_graphs",
    fields={"common": FieldType.INTEGER, "to1": FieldType.OTHER, "to2": FieldType.OTHER},
    json={"to1": list_of(INT), "to2": list_of(INT)},
)
# every field is a column (db.codebases) under the same name
_CODEBASE_FIELDS = {f: f for f in CODEBASE.fields}
_BRANCH_FIELDS = {f: f for f in BRANCH.fields}
_COMMIT_FIELDS = {f: f for f in COMMIT.fields}
_SET_FIELDS = {f: f for f in TEST_RESULT_SET.fields}


async def _codebases(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:  # rows and total from one snapshot
            rows = await db.codebases.get_codebases(options=options, conn=conn)
            total = await db.codebases.count_codebases(options=options, conn=conn)
        return [shapes.codebase(c) for c in rows], total

    async def everything() -> list[Item]:
        return [shapes.codebase(c) for c in await db.codebases.get_codebases()]

    return await page(spec, _CODEBASE_FIELDS, in_db, everything)


async def _codebase(db: Database, kw: Mapping[str, Any]) -> Item | None:
    if "codebaseid" in kw:
        found = await db.codebases.get_codebase(kw["codebaseid"])
    else:
        found = await db.codebases.get_codebase_by_name(kw["projectid"], kw["codebasename"])
    return None if found is None else shapes.codebase(found)


async def _branches(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    codebaseid = kw["codebaseid"]

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:
            rows = await db.codebase_branches.get_branches(codebaseid, options=options, conn=conn)
            total = await db.codebase_branches.count_branches(
                codebaseid, options=options, conn=conn
            )
        return [shapes.branch(b) for b in rows], total

    async def everything() -> list[Item]:
        return [shapes.branch(b) for b in await db.codebase_branches.get_branches(codebaseid)]

    return await page(spec, _BRANCH_FIELDS, in_db, everything)


async def _branch(db: Database, kw: Mapping[str, Any]) -> Item | None:
    found = await db.codebase_branches.get_branch(kw["branchid"])
    return None if found is None else shapes.branch(found)


async def _commits(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    codebaseid = kw["codebaseid"]

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:
            rows = await db.codebase_commits.get_commits(
                codebaseid=codebaseid, options=options, conn=conn
            )
            total = await db.codebase_commits.count_commits(
                codebaseid=codebaseid, options=options, conn=conn
            )
        return [shapes.commit(c) for c in rows], total

    async def everything() -> list[Item]:
        commits = await db.codebase_commits.get_commits(codebaseid=codebaseid)
        return [shapes.commit(c) for c in commits]

    return await page(spec, _COMMIT_FIELDS, in_db, everything)


async def _commit(db: Database, kw: Mapping[str, Any]) -> Item | None:
    if "revision" in kw:
        found = await db.codebase_commits.get_commit_by_revision(
            codebaseid=kw["codebaseid"], revision=kw["revision"]
        )
    else:
        found = await db.codebase_commits.get_commit(kw["commitid"])
    return None if found is None else shapes.commit(found)


async def _common_parent(db: Database, kw: Mapping[str, Any]) -> Item | None:
    found = await db.codebase_commits.get_first_common_commit_with_ranges(
        kw["commitid1"], kw["commitid2"]
    )
    if found is None:
        return None
    return {"common": found.common, "to1": list(found.to1), "to2": list(found.to2)}


async def _range_test_result_sets(
    db: Database, kw: Mapping[str, Any], spec: ResultSpec
) -> Collection:
    """Sets of the commits from ``commitid1`` to ``commitid2``, both included; none unless the
    first is an ancestor of the second (or the same commit)."""
    first = kw["commitid1"]
    found = await db.codebase_commits.get_first_common_commit_with_ranges(first, kw["commitid2"])
    if found is None or found.to2[0] != first:
        commitids: tuple[int, ...] = ()
    else:
        commitids = found.to2
    sets = db.test_results

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:
            rows = await sets.get_test_result_sets_for_commits(
                commitids, options=options, conn=conn
            )
            total = await sets.count_test_result_sets_for_commits(
                commitids, options=options, conn=conn
            )
        return [shapes.test_result_set(s) for s in rows], total

    async def everything() -> list[Item]:
        rows = await sets.get_test_result_sets_for_commits(commitids)
        return [shapes.test_result_set(s) for s in rows]

    return await page(spec, _SET_FIELDS, in_db, everything)


_RANGE = ("codebases", "n:codebaseid", "commit_range", "n:commitid1", "n:commitid2")

ENDPOINTS = (
    Endpoint(pattern=("codebases",), rtype=CODEBASE, collection=_codebases),
    Endpoint(pattern=("codebases", "n:codebaseid"), rtype=CODEBASE, item=_codebase),
    Endpoint(
        pattern=("projects", "n:projectid", "codebases", "i:codebasename"),
        rtype=CODEBASE,
        item=_codebase,
    ),
    Endpoint(pattern=("codebases", "n:codebaseid", "branches"), rtype=BRANCH, collection=_branches),
    Endpoint(pattern=("branches", "n:branchid"), rtype=BRANCH, item=_branch),
    Endpoint(pattern=("codebases", "n:codebaseid", "commits"), rtype=COMMIT, collection=_commits),
    Endpoint(pattern=("commits", "n:commitid"), rtype=COMMIT, item=_commit),
    Endpoint(
        pattern=("codebases", "n:codebaseid", "commits_by_revision", "s:revision"),
        rtype=COMMIT,
        item=_commit,
    ),
    Endpoint(pattern=(*_RANGE, "commits_common_parent"), rtype=COMMIT_GRAPH, item=_common_parent),
    Endpoint(
        pattern=(*_RANGE, "test_result_sets"),
        rtype=TEST_RESULT_SET,
        collection=_range_test_result_sets,
    ),
)

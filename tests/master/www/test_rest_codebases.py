"""Codebases, branches and commits (with the common-ancestor walk and the test result sets of a
commit range), their update methods' events, the root links and ``application.spec``, through a
real aiohttp server on 127.0.0.1 over each backend."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from buildyard.master.data.api import DataAPI
from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import DbError
from buildyard.master.mq.local import LocalMQ, LocalSubscription
from buildyard.master.www.app import make_app
from buildyard.testing.clock import FakeClock
from tests.master.data.pipeline_rows import Rows, write_rows

JSON = {"Accept": "application/json"}
Client = TestClient[web.Request, web.Application]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Graph:
    """c1 <- c2 <- c3 <- c4 on main, c2 <- c5 <- c6 on feature; c2 is at revision "abc" (the
    stamp of write_rows' builds), c4 at "def" (one more build's)."""

    rows: Rows
    projectid: int
    codebaseid: int
    other_codebaseid: int
    c: dict[int, int]
    main: int
    feature: int
    set_abc: int
    set_def: int


async def _graph(updates: Updates, database: Database, rows: Rows) -> Graph:
    projectid = await database.projects.find_project_id("proj")
    codebaseid = await updates.find_codebase_id(projectid=projectid, name="cb")
    other = await updates.find_codebase_id(projectid=projectid, name="other")
    assert codebaseid is not None and other is not None
    revisions = {1: "r1", 2: "abc", 3: "r3", 4: "def", 5: "r5", 6: "r6"}
    parents = {1: None, 2: 1, 3: 2, 4: 3, 5: 2, 6: 5}
    c: dict[int, int] = {}
    for n, revision in revisions.items():
        parent = parents[n]
        c[n] = await updates.add_commit(
            codebaseid=codebaseid,
            author=f"author{n}",
            committer=None if n % 2 else f"committer{n}",
            comments=f"commit {n}",
            when_timestamp=1000 + n,
            revision=revision,
            parent_commitid=None if parent is None else c[parent],
        )
    await updates.update_branch(codebaseid=codebaseid, name="main", commitid=c[3], last_timestamp=5)
    await updates.update_branch(codebaseid=codebaseid, name="main", commitid=c[4], last_timestamp=9)
    await updates.update_branch(
        codebaseid=codebaseid, name="feature/x", commitid=c[6], last_timestamp=7
    )
    branches = await database.codebase_branches.get_branches(codebaseid)
    main, feature = (b.id for b in branches)

    set_abc = await updates.add_test_result_set(
        builderid=rows.b1,
        buildid=rows.build_ok,
        stepid=rows.test_step,
        description="at abc",
        category="pass_fail",
        value_unit="boolean",
    )
    bs = await updates.add_buildset(
        scheduler="sch",
        sourcestamps=[
            {"branch": "main", "revision": "def", "repository": "r", "project": "p", "codebase": ""}
        ],
        reason="at def",
        properties={},
        builderids=[rows.b1],
    )
    [brid] = bs.brids.values()
    assert await updates.claim_buildrequests([brid], masterid=rows.masterid)
    build_def, _ = await updates.add_build(
        builderid=rows.b1, buildrequestid=brid, workerid=rows.w1, masterid=rows.masterid
    )
    step_def, _, _ = await updates.add_step(build_def, "test")
    set_def = await updates.add_test_result_set(
        builderid=rows.b1,
        buildid=build_def,
        stepid=step_def,
        description="at def",
        category="pass_fail",
        value_unit="boolean",
    )
    return Graph(
        rows=rows,
        projectid=projectid,
        codebaseid=codebaseid,
        other_codebaseid=other,
        c=c,
        main=main,
        feature=feature,
        set_abc=set_abc,
        set_def=set_def,
    )


@pytest.fixture
async def served(database: Database, clock: FakeClock) -> AsyncIterator[tuple[Client, Graph]]:
    updates = Updates(db=database, mq=LocalMQ(), clock=clock)
    rows = await write_rows(updates, database, clock)
    graph = await _graph(updates, database, rows)
    async with TestClient(
        TestServer(make_app(data=DataAPI(db=database), title="t"), host="127.0.0.1")
    ) as c:
        yield c, graph


async def _get(client: Client, path: str) -> Any:
    resp = await client.get(f"/api/v2/{path}", headers=JSON)
    assert resp.status == 200, (path, await resp.text())
    return await resp.json()


async def _status(client: Client, path: str) -> tuple[int, Any]:
    resp = await client.get(f"/api/v2/{path}", headers=JSON)
    return resp.status, await resp.json(content_type=None)


async def test_codebases(served: tuple[Client, Graph]) -> None:
    client, g = served
    cb = {"codebaseid": g.codebaseid, "projectid": g.projectid, "name": "cb", "slug": "cb"}
    body = await _get(client, "codebases")
    assert body["codebases"][0] == cb
    assert [c["name"] for c in body["codebases"]] == ["cb", "other"]
    assert body["meta"] == {"total": 2}
    body = await _get(client, "codebases?name=other&field=codebaseid&field=name")
    assert body == {
        "codebases": [{"codebaseid": g.other_codebaseid, "name": "other"}],
        "meta": {"total": 1},
    }
    body = await _get(client, "codebases?order=-codebaseid&limit=1")
    assert [c["name"] for c in body["codebases"]] == ["other"]
    assert body["meta"] == {"total": 2}
    assert await _get(client, f"codebases/{g.codebaseid}") == {"codebases": [cb], "meta": {}}
    body = await _get(client, f"projects/{g.projectid}/codebases/cb")
    assert body == {"codebases": [cb], "meta": {}}
    assert (await _status(client, f"projects/{g.projectid}/codebases/nope"))[0] == 404
    assert (await _status(client, f"projects/{g.projectid + 1}/codebases/cb"))[0] == 404
    assert (await _status(client, "codebases/999"))[0] == 404


async def test_branches(served: tuple[Client, Graph]) -> None:
    client, g = served
    main = {
        "branchid": g.main,
        "codebaseid": g.codebaseid,
        "name": "main",
        "commitid": g.c[4],  # moved by the second update_branch
        "last_timestamp": 9,
    }
    body = await _get(client, f"codebases/{g.codebaseid}/branches")
    assert body["branches"][0] == main
    assert [b["name"] for b in body["branches"]] == ["main", "feature/x"]
    assert body["meta"] == {"total": 2}
    body = await _get(client, f"codebases/{g.codebaseid}/branches?order=last_timestamp")
    assert [b["name"] for b in body["branches"]] == ["feature/x", "main"]
    body = await _get(client, f"codebases/{g.codebaseid}/branches?name__contains=feat")
    assert [b["branchid"] for b in body["branches"]] == [g.feature]
    assert await _get(client, f"branches/{g.main}") == {"branches": [main], "meta": {}}
    assert (await _get(client, f"codebases/{g.other_codebaseid}/branches"))["branches"] == []
    assert (await _status(client, "branches/999"))[0] == 404


async def test_commits(served: tuple[Client, Graph]) -> None:
    client, g = served
    c2 = {
        "commitid": g.c[2],
        "codebaseid": g.codebaseid,
        "author": "author2",
        "committer": "committer2",
        "comments": "commit 2",
        "when_timestamp": 1002,
        "revision": "abc",
        "parent_commitid": g.c[1],
    }
    body = await _get(client, f"codebases/{g.codebaseid}/commits")
    assert [c["commitid"] for c in body["commits"]] == [g.c[n] for n in range(1, 7)]
    assert body["commits"][1] == c2
    assert body["commits"][0]["parent_commitid"] is None
    assert body["commits"][0]["committer"] is None
    body = await _get(client, f"codebases/{g.codebaseid}/commits?parent_commitid={g.c[2]}")
    assert [c["commitid"] for c in body["commits"]] == [g.c[3], g.c[5]]
    assert body["meta"] == {"total": 2}
    body = await _get(client, f"codebases/{g.codebaseid}/commits?order=-when_timestamp&limit=2")
    assert [c["revision"] for c in body["commits"]] == ["r6", "r5"]
    assert body["meta"] == {"total": 6}
    assert await _get(client, f"commits/{g.c[2]}") == {"commits": [c2], "meta": {}}
    body = await _get(client, f"codebases/{g.codebaseid}/commits_by_revision/abc")
    assert body == {"commits": [c2], "meta": {}}
    path = f"codebases/{g.other_codebaseid}/commits_by_revision/abc"
    assert (await _status(client, path))[0] == 404  # a revision is looked up in its codebase
    assert (await _get(client, f"codebases/{g.other_codebaseid}/commits"))["commits"] == []
    assert (await _status(client, "commits/999"))[0] == 404


# (first, second, common, to1, to2) by commit number
Case = tuple[int, int, int, list[int], list[int]]


@pytest.mark.parametrize(
    "case",
    [
        (4, 6, 2, [2, 3, 4], [2, 5, 6]),
        (6, 4, 2, [2, 5, 6], [2, 3, 4]),
        (2, 4, 2, [2], [2, 3, 4]),
        (4, 2, 2, [2, 3, 4], [2]),
        (1, 6, 1, [1], [1, 2, 5, 6]),
        (3, 3, 3, [3], [3]),
    ],
)
async def test_commits_common_parent(served: tuple[Client, Graph], case: Case) -> None:
    first, second, common, to1, to2 = case
    client, g = served
    path = f"codebases/{g.codebaseid}/commit_range/{g.c[first]}/{g.c[second]}/commits_common_parent"
    body = await _get(client, path)
    assert body == {
        "commit_graphs": [
            {"common": g.c[common], "to1": [g.c[n] for n in to1], "to2": [g.c[n] for n in to2]}
        ],
        "meta": {},
    }
    body = await _get(client, f"{path}?field=common")
    assert body == {"commit_graphs": [{"common": g.c[common]}], "meta": {}}


async def test_commits_common_parent_of_unknown_commits(served: tuple[Client, Graph]) -> None:
    client, g = served
    base = f"codebases/{g.codebaseid}/commit_range"
    for first, second in ((g.c[3], 999), (999, g.c[3]), (999, 999)):
        status, body = await _status(client, f"{base}/{first}/{second}/commits_common_parent")
        assert status == 404, body
        assert "error" in body
    status, body = await _status(client, f"{base}/{g.c[3]}/{g.c[4]}/commits_common_parent?common=1")
    assert (status, body) == (400, {"error": "this is not a collection"})


async def test_commits_common_parent_walks_at_most_100_parents(
    database: Database, clock: FakeClock
) -> None:
    updates = Updates(db=database, mq=LocalMQ(), clock=clock)
    projectid = await database.projects.find_project_id("deep")
    codebaseid = await updates.find_codebase_id(projectid=projectid, name="cb")
    assert codebaseid is not None
    chain: list[int] = []
    for n in range(102):
        chain.append(
            await updates.add_commit(
                codebaseid=codebaseid,
                author="a",
                comments="",
                when_timestamp=n,
                revision=f"rev{n}",
                parent_commitid=chain[-1] if chain else None,
            )
        )
    commits = database.codebase_commits
    found = await commits.get_first_common_commit_with_ranges(chain[1], chain[101])
    assert found is not None
    assert (found.common, list(found.to2)) == (chain[1], chain[1:])
    # chain[0] is 101 parents away from chain[101]: beyond the walk
    assert await commits.get_first_common_commit_with_ranges(chain[0], chain[101]) is None


async def test_test_result_sets_of_a_commit_range(served: tuple[Client, Graph]) -> None:
    client, g = served
    base = f"codebases/{g.codebaseid}/commit_range"
    body = await _get(client, f"{base}/{g.c[2]}/{g.c[4]}/test_result_sets")
    assert [s["test_result_setid"] for s in body["test_result_sets"]] == [g.set_abc, g.set_def]
    assert body["test_result_sets"][0]["description"] == "at abc"
    assert body["meta"] == {"total": 2}
    body = await _get(client, f"{base}/{g.c[3]}/{g.c[4]}/test_result_sets")
    assert [s["test_result_setid"] for s in body["test_result_sets"]] == [g.set_def]
    body = await _get(client, f"{base}/{g.c[1]}/{g.c[4]}/test_result_sets?description=at%20def")
    assert [s["test_result_setid"] for s in body["test_result_sets"]] == [g.set_def]
    assert body["meta"] == {"total": 1}
    # not an ancestor first: nothing (as Buildbot)
    for first, second in ((4, 2), (6, 4), (2, 999)):
        body = await _get(client, f"{base}/{g.c[first]}/{g.c.get(second, 999)}/test_result_sets")
        assert body == {"test_result_sets": [], "meta": {"total": 0}}
    body = await _get(client, f"{base}/{g.c[2]}/{g.c[2]}/test_result_sets")
    assert [s["test_result_setid"] for s in body["test_result_sets"]] == [g.set_abc]


def _drain(sub: LocalSubscription) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    out = []
    while sub.pending:
        key, body = sub._queue.get_nowait()
        out.append((key, dict(body)))
    return out


async def test_update_methods_and_their_events(database: Database, clock: FakeClock) -> None:
    mq = LocalMQ()
    updates = Updates(db=database, mq=mq, clock=clock)
    sub = mq.subscribe(
        ("codebases", None, None),
        ("codebases", None, "commits", None, None),
        ("branches", None, None),
        ("commits", None, None),
    )
    p1 = await database.projects.find_project_id("p1")
    p2 = await database.projects.find_project_id("p2")
    p3 = await database.projects.find_project_id("p3")
    assert await updates.find_codebase_id(projectid=p1, name="cb", auto_create=False) is None
    cbid = await updates.find_codebase_id(projectid=p1, name="cb")
    assert cbid is not None
    assert await updates.find_codebase_id(projectid=p1, name="cb", auto_create=False) == cbid
    assert await updates.find_codebase_id(projectid=p1, name="cb") == cbid
    in_p3 = await updates.find_codebase_id(projectid=p3, name="cb")
    assert in_p3 not in (None, cbid)
    assert _drain(sub) == []  # finding creates silently, as in Buildbot

    await updates.update_codebase_info(codebaseid=cbid, projectid=p2, slug="moved")
    codebase = {"codebaseid": cbid, "projectid": p2, "name": "cb", "slug": "moved"}
    assert _drain(sub) == [(("codebases", str(cbid), "update"), codebase)]
    with pytest.raises(DbError):  # p3 has a codebase of that name
        await updates.update_codebase_info(codebaseid=cbid, projectid=p3, slug="x")

    commitid = await updates.add_commit(
        codebaseid=cbid,
        author="me",
        files=["a.py"],
        comments="first",
        when_timestamp=5,
        revision="aaa",
    )
    commit = {
        "commitid": commitid,
        "codebaseid": cbid,
        "author": "me",
        "committer": None,
        "comments": "first",
        "when_timestamp": 5,
        "revision": "aaa",
        "parent_commitid": None,
    }
    assert _drain(sub) == [
        (("commits", str(commitid), "new"), commit),
        (("codebases", str(cbid), "commits", str(commitid), "new"), commit),
    ]

    await updates.update_branch(codebaseid=cbid, name="main", last_timestamp=3)
    [branch] = await database.codebase_branches.get_branches(cbid)
    body = {
        "branchid": branch.id,
        "codebaseid": cbid,
        "name": "main",
        "commitid": None,
        "last_timestamp": 3,
    }
    await updates.update_branch(codebaseid=cbid, name="main", commitid=commitid, last_timestamp=4)
    moved = {**body, "commitid": commitid, "last_timestamp": 4}
    assert _drain(sub) == [
        (("branches", str(branch.id), "update"), body),
        (("branches", str(branch.id), "update"), moved),
    ]
    assert len(await database.codebase_branches.get_branches(cbid)) == 1

    with pytest.raises(DbError):  # a codebase has a revision once
        await updates.add_commit(
            codebaseid=cbid, author="me", comments="again", when_timestamp=6, revision="aaa"
        )
    with pytest.raises(DbError):  # an unknown parent
        await updates.add_commit(
            codebaseid=cbid,
            author="me",
            comments="x",
            when_timestamp=6,
            revision="bbb",
            parent_commitid=commitid + 100,
        )
    with pytest.raises(ValueError, match="longer than 70"):
        await updates.add_commit(
            codebaseid=cbid, author="me", comments="x", when_timestamp=6, revision="r" * 71
        )
    assert _drain(sub) == []


async def test_root_links(served: tuple[Client, Graph]) -> None:
    client, _ = served
    resp = await client.get("/api/v2", headers=JSON)
    assert resp.status == 200
    body = await resp.json()
    names = [r["name"] for r in body["rootlinks"]]
    # Buildbot's order; logchunks is a root link there, but /logchunks is not served here
    assert names == [
        "builders",
        "builds",
        "buildrequests",
        "codebases",
        "workers",
        "buildsets",
        "changes",
        "changesources",
        "masters",
        "sourcestamps",
        "schedulers",
        "projects",
    ]
    assert body["meta"] == {"total": len(names)}
    assert (await client.get("/api/v2/")).status == 404


async def test_application_spec(served: tuple[Client, Graph]) -> None:
    client, _ = served
    body = await _get(client, "application.spec")
    specs = body["specs"]
    assert body["meta"] == {"total": len(specs)}
    paths = [s["path"] for s in specs]
    assert paths == sorted(paths)
    by_path = {s["path"]: s for s in specs}
    # every endpoint is listed once, the root and application.spec included
    assert len(by_path) == len(specs)
    assert by_path[""]["plural"] == "rootlinks"
    assert by_path["application.spec"]["type"] == "spec"
    assert by_path["codebases/n:codebaseid/commits_by_revision/s:revision"] == {
        "path": "codebases/n:codebaseid/commits_by_revision/s:revision",
        "type": "commit",
        "plural": "commits",
        "type_spec": {
            "type": "commit",
            "fields": [
                {"name": "commitid", "type": "integer", "type_spec": {"name": "integer"}},
                {"name": "codebaseid", "type": "integer", "type_spec": {"name": "integer"}},
                {"name": "author", "type": "string", "type_spec": {"name": "string"}},
                {
                    "name": "committer",
                    "type": "string or None",
                    "type_spec": {"name": "string", "can_be_null": True},
                },
                {"name": "comments", "type": "string", "type_spec": {"name": "string"}},
                {"name": "when_timestamp", "type": "integer", "type_spec": {"name": "integer"}},
                {"name": "revision", "type": "string", "type_spec": {"name": "string"}},
                {
                    "name": "parent_commitid",
                    "type": "integer or None",
                    "type_spec": {"name": "integer", "can_be_null": True},
                },
            ],
        },
    }
    graph = by_path[
        "codebases/n:codebaseid/commit_range/n:commitid1/n:commitid2/commits_common_parent"
    ]
    assert graph["plural"] == "commit_graphs"
    assert graph["type_spec"]["fields"][1] == {
        "name": "to1",
        "type": "list",
        "type_spec": {"type": "list", "of": {"name": "integer"}},
    }
    assert by_path["builds/n:buildid/properties"]["type"] == "sourcedproperties"
    assert by_path["builds/n:buildid/properties"]["type_spec"] == {"name": "sourcedproperties"}
    # an embedded entity is described by its own resource type
    buildset = {f["name"]: f for f in by_path["buildsets"]["type_spec"]["fields"]}
    of = buildset["sourcestamps"]["type_spec"]["of"]
    assert of["type"] == "sourcestamp"
    created_at = next(f for f in of["fields"] if f["name"] == "created_at")
    assert created_at["type"] == "datetime"
    value = by_path["builds/n:buildid/data/i:name"]["type_spec"]["fields"][3]
    assert value == {
        "name": "value",
        "type": "binary or None",
        "type_spec": {"name": "binary", "can_be_null": True},
    }
    body = await _get(client, "application.spec?plural=codebases&field=path&field=plural")
    assert body == {
        "specs": [
            {"path": "codebases", "plural": "codebases"},
            {"path": "codebases/n:codebaseid", "plural": "codebases"},
            {"path": "projects/n:projectid/codebases/i:codebasename", "plural": "codebases"},
        ],
        "meta": {"total": 3},
    }
    status, body = await _status(client, "application.spec?bogus=1")
    assert status == 400
    assert "bogus" in body["error"]

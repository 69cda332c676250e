"""Build data, test results, projects, a change's and a build's triggered builds, ``property=``
on one item, a builder's masters, property lists, and the filters on text and list fields,
through a real aiohttp server on 127.0.0.1 over each backend."""

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
from buildyard.master.mq.local import LocalMQ
from buildyard.master.www.app import make_app
from buildyard.testing.clock import FakeClock
from tests.master.data.pipeline_rows import Rows, write_rows

JSON = {"Accept": "application/json"}
Client = TestClient[web.Request, web.Application]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class More:
    rows: Rows
    triggered: int
    pass_fail: int
    durations: int
    project: int


async def _more(updates: Updates, database: Database, rows: Rows) -> More:
    # a build that build_ok triggered, from a stamp the change is not on
    bs = await updates.add_buildset(
        scheduler="trigger",
        sourcestamps=[
            {
                "branch": "other",
                "revision": "zzz",
                "repository": "r",
                "project": "p",
                "codebase": "",
            }
        ],
        reason="triggered",
        properties={},
        builderids=[rows.b2],
        parent_buildid=rows.build_ok,
    )
    [brid] = bs.brids.values()
    assert await updates.claim_buildrequests([brid], masterid=rows.masterid)
    triggered, _ = await updates.add_build(
        builderid=rows.b2, buildrequestid=brid, workerid=rows.w2, masterid=rows.masterid
    )
    await updates.set_build_data(rows.build_ok, "coverage", b"\x00\x01binary", "Cov step")
    await updates.set_build_data(rows.build_ok, "report", b"first", "Report")
    await updates.set_build_data(rows.build_ok, "report", b"second!", "Report")  # replaced

    pass_fail = await updates.add_test_result_set(
        builderid=rows.b1,
        buildid=rows.build_ok,
        stepid=rows.test_step,
        description="unit",
        category="pass_fail",
        value_unit="boolean",
    )
    await updates.add_test_results(
        rows.b1,
        pass_fail,
        [
            {"test_name": f"test_{i}", "test_code_path": "t/a.py", "line": i, "value": str(i % 2)}
            for i in range(5)
        ]
        + [{"test_code_path": "t/Case.py", "duration_ns": 7, "value": "1"}],
    )
    await updates.complete_test_result_set(pass_fail, tests_passed=3, tests_failed=3)
    durations = await updates.add_test_result_set(
        builderid=rows.b1,
        buildid=rows.build_ok,
        stepid=rows.compile_step,
        description=None,
        category="performance",
        value_unit="ns",
    )
    project = await database.projects.find_project_id("Big Project")
    await database.builders.update_builder_info(
        rows.b1,
        description="first",
        description_format=None,
        description_html=None,
        projectid=project,
        tags=["Fast", "linux"],
    )
    await database.builders.update_builder_info(
        rows.b2,
        description="Second FIRST",
        description_format=None,
        description_html=None,
        projectid=None,
        tags=["slow"],
    )
    return More(
        rows=rows, triggered=triggered, pass_fail=pass_fail, durations=durations, project=project
    )


@pytest.fixture
async def served(database: Database, clock: FakeClock) -> AsyncIterator[tuple[Client, More]]:
    updates = Updates(db=database, mq=LocalMQ(), clock=clock)
    rows = await write_rows(updates, database, clock)
    more = await _more(updates, database, rows)
    async with TestClient(
        TestServer(make_app(data=DataAPI(db=database), title="t"), host="127.0.0.1")
    ) as c:
        yield c, more


async def _get(client: Client, path: str) -> Any:
    resp = await client.get(f"/api/v2/{path}", headers=JSON)
    assert resp.status == 200, (path, await resp.text())
    return await resp.json()


async def test_change_builds_and_triggered_builds(served: tuple[Client, More]) -> None:
    client, more = served
    rows = more.rows
    body = await _get(client, f"changes/{rows.changeid}/builds?order=-buildid&limit=2")
    assert [b["buildid"] for b in body["builds"]] == [rows.build_running, rows.build_bad]
    assert body["meta"] == {"total": 3}  # every build of a buildset on the change's stamp
    body = await _get(client, f"changes/{rows.changeid}/builds?complete=false")
    assert [b["buildid"] for b in body["builds"]] == [rows.build_running]
    body = await _get(client, f"builds/{rows.build_ok}/triggered_builds")
    assert [b["buildid"] for b in body["builds"]] == [more.triggered]
    assert body["meta"] == {"total": 1}
    assert (await _get(client, f"builds/{rows.build_bad}/triggered_builds"))["builds"] == []
    assert (await _get(client, "changes/999/builds"))["builds"] == []


async def test_property_on_one_build_and_one_request(served: tuple[Client, More]) -> None:
    client, more = served
    rows = more.rows
    [build] = (await _get(client, f"builds/{rows.build_ok}"))["builds"]
    assert build["properties"] == {}
    [build] = (await _get(client, f"builds/{rows.build_ok}?property=branch"))["builds"]
    assert build["properties"] == {"branch": ["main", "Build"]}
    [build] = (await _get(client, "builders/b1/builds/1?property=*&field=properties"))["builds"]
    assert build == {"properties": {"branch": ["main", "Build"], "workername": ["w1", "Worker"]}}
    [request] = (await _get(client, f"buildrequests/{rows.brids[0]}"))["buildrequests"]
    assert request["properties"] is None
    [request] = (await _get(client, f"buildrequests/{rows.brids[0]}?property=owner"))[
        "buildrequests"
    ]
    assert request["properties"] == {"owner": ["me", "Force"]}


async def test_build_data(served: tuple[Client, More]) -> None:
    client, more = served
    rows = more.rows
    body = await _get(client, f"builds/{rows.build_ok}/data")
    assert body == {
        "build_data": [
            {
                "buildid": rows.build_ok,
                "name": "coverage",
                "value": None,
                "length": 8,
                "source": "Cov step",
            },
            {
                "buildid": rows.build_ok,
                "name": "report",
                "value": None,
                "length": 7,
                "source": "Report",
            },
        ],
        "meta": {"total": 2},
    }
    body = await _get(client, "builders/b1/builds/1/data?length__gt=7&field=name&field=length")
    assert body == {"build_data": [{"name": "coverage", "length": 8}], "meta": {"total": 1}}
    body = await _get(client, f"builders/{rows.b1}/builds/1/data/report")
    assert body["meta"] == {}
    assert [d["length"] for d in body["build_data"]] == [7]

    resp = await client.get(f"/api/v2/builds/{rows.build_ok}/data/coverage/value")
    assert resp.status == 200
    assert resp.content_type == "application/octet-stream"
    assert resp.headers["Content-Disposition"] == "attachment; filename=coverage"
    assert await resp.read() == b"\x00\x01binary"
    resp = await client.get("/api/v2/builders/b1/builds/1/data/report/value")
    assert await resp.read() == b"second!"


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("builds/1/data/nothing", 404, "no such build_data"),
        ("builds/999/data/report", 404, "no such build_data"),
        ("builds/1/data/nothing/value", 404, "no such build_data"),
        ("builders/nobody/builds/1/data/report/value", 404, "no such build_data"),
        ("builds/1/data/report/value/more", 404, "invalid path"),
        ("builds/1/data/report/value?bogus=1", 400, "unrecognized query parameter"),
        ("builds/1/data/report?name=x", 400, "not a collection"),
        ("builds/1/data?length=x", 400, "invalid integer"),
        ("test_result_sets/999", 404, "no such test_result_set"),
        ("test_result_sets?complete=maybe", 400, "invalid boolean"),
        ("test_result_sets/1/results?line__lt=a", 400, "invalid integer"),
        ("test_result_sets/1/results?bogus=1", 400, "unrecognized query parameter"),
        ("projects/999", 404, "no such project"),
        ("projects/nothing", 404, "no such project"),
        ("projects?active=sometimes", 400, "invalid boolean"),
        ("builders?masterids__contains=x", 400, "invalid integer"),
    ],
)
async def test_bad_requests(
    served: tuple[Client, More], path: str, status: int, message: str
) -> None:
    client, _ = served
    resp = await client.get(f"/api/v2/{path}")
    assert resp.status == status
    assert message in (await resp.json(content_type=None))["error"]


async def test_test_result_sets(served: tuple[Client, More]) -> None:
    client, more = served
    rows = more.rows
    body = await _get(client, "test_result_sets")
    assert body["meta"] == {"total": 2}
    assert body["test_result_sets"][0] == {
        "test_result_setid": more.pass_fail,
        "builderid": rows.b1,
        "buildid": rows.build_ok,
        "stepid": rows.test_step,
        "description": "unit",
        "category": "pass_fail",
        "value_unit": "boolean",
        "tests_passed": 3,
        "tests_failed": 3,
        "complete": True,
    }
    for path, expected in [
        ("test_result_sets?complete=false", [more.durations]),
        ("test_result_sets?complete=true", [more.pass_fail]),
        (
            f"builds/{rows.build_ok}/test_result_sets?order=-test_result_setid",
            [more.durations, more.pass_fail],
        ),
        (f"builds/{rows.build_bad}/test_result_sets", []),
        (f"steps/{rows.compile_step}/test_result_sets", [more.durations]),
        (f"builders/{rows.b1}/test_result_sets?category=pass_fail", [more.pass_fail]),
        ("builders/b1/test_result_sets?description__contains=ni", [more.pass_fail]),
        ("builders/b2/test_result_sets", []),
        ("builders/nobody/test_result_sets", []),
    ]:
        body = await _get(client, path)
        assert [s["test_result_setid"] for s in body["test_result_sets"]] == expected, path
    [one] = (await _get(client, f"test_result_sets/{more.durations}"))["test_result_sets"]
    assert (one["description"], one["tests_passed"], one["complete"]) == (None, None, False)


async def test_test_results(served: tuple[Client, More]) -> None:
    client, more = served
    body = await _get(client, f"test_result_sets/{more.pass_fail}/results?limit=2")
    assert body["meta"] == {"total": 6}
    first = body["test_results"][0]
    assert first == {
        "test_resultid": first["test_resultid"],
        "builderid": more.rows.b1,
        "test_result_setid": more.pass_fail,
        "test_name": "test_0",
        "test_code_path": "t/a.py",
        "line": 0,
        "duration_ns": None,
        "value": "0",
    }
    body = await _get(
        client,
        f"test_result_sets/{more.pass_fail}/results?value=1&order=-line&offset=1&field=line"
        "&field=value",
    )
    # passes: lines 1, 3 and the one without a line (null sorts last descending)
    assert body == {
        "test_results": [{"line": 1, "value": "1"}, {"line": None, "value": "1"}],
        "meta": {"total": 3},
    }
    body = await _get(client, f"test_result_sets/{more.pass_fail}/results?test_name__contains=_4")
    assert [r["line"] for r in body["test_results"]] == [4]
    body = await _get(client, f"test_result_sets/{more.pass_fail}/results?test_name=test_2")
    assert [r["line"] for r in body["test_results"]] == [2]
    assert (await _get(client, f"test_result_sets/{more.durations}/results"))["meta"] == {
        "total": 0
    }
    assert (await _get(client, "test_result_sets/999/results"))["test_results"] == []


async def test_projects(served: tuple[Client, More]) -> None:
    client, more = served
    rows = more.rows
    body = await _get(client, "projects")
    assert body == {
        "projects": [
            {
                "projectid": more.project,
                "name": "Big Project",
                "slug": "Big_Project",
                "active": None,
                "description": None,
                "description_format": None,
                "description_html": None,
            }
        ],
        "meta": {"total": 1},
    }
    # b1 runs on the active master m1
    body = await _get(client, "projects?active=true")
    assert [(p["projectid"], p["active"]) for p in body["projects"]] == [(more.project, True)]
    body = await _get(client, "projects?active=false")
    assert body == {"projects": [], "meta": {"total": 0}}
    [one] = (await _get(client, f"projects/{more.project}"))["projects"]
    assert one["slug"] == "Big_Project"
    body = await _get(client, f"projects/{more.project}/builders")
    assert [(b["builderid"], b["projectid"]) for b in body["builders"]] == [(rows.b1, more.project)]
    body = await _get(client, f"workers/{rows.w2}/builders")
    assert [b["name"] for b in body["builders"]] == ["b2"]


async def test_filters_on_list_fields_match_as_buildbot(served: tuple[Client, More]) -> None:
    client, more = served
    rows = more.rows

    async def names(query: str) -> list[str]:
        return [b["name"] for b in (await _get(client, f"builders?{query}"))["builders"]]

    # contains: membership, any of several values
    assert await names("tags__contains=linux") == ["b1"]
    assert await names("tags__contains=slow&tags__contains=linux") == ["b1", "b2"]
    assert await names("tags__contains=lin") == []  # an element, not a substring
    assert await names(f"masterids__contains={rows.masterid}") == ["b1", "b2"]
    assert await names("masterids__contains=999") == []
    # a list never equals one of its elements (Buildbot compares the whole list)
    assert await names("tags=linux") == []
    assert await names("tags__ne=linux") == ["b1", "b2"]


async def test_contains_is_a_case_sensitive_substring(served: tuple[Client, More]) -> None:
    client, _ = served

    async def names(query: str) -> list[str]:
        return [b["name"] for b in (await _get(client, f"builders?{query}"))["builders"]]

    # in SQL (description is a column) and in Python (with a list field's filter) alike
    for extra in ("", "&tags__ne=x"):
        assert await names(f"description__contains=first{extra}") == ["b1"], extra
        assert await names(f"description__contains=FIRST{extra}") == ["b2"], extra
        assert await names(f"description__contains=irs&description__contains=Sec{extra}") == [
            "b1",
            "b2",
        ], extra
        # LIKE's wildcards are plain characters
        assert await names(f"description__contains=f%25t{extra}") == [], extra
        assert await names(f"description__contains=f_rst{extra}") == [], extra


async def test_a_builders_masters(served: tuple[Client, More]) -> None:
    client, more = served
    rows = more.rows
    body = await _get(client, f"builders/{rows.b1}/masters")
    assert [m["masterid"] for m in body["masters"]] == [rows.masterid]
    assert body["meta"] == {"total": 1}
    [one] = (await _get(client, f"builders/{rows.b1}/masters/{rows.masterid}"))["masters"]
    assert one["name"] == "host:/m1"
    assert (await _get(client, "builders/999/masters")) == {"masters": [], "meta": {"total": 0}}
    assert (await client.get(f"/api/v2/builders/999/masters/{rows.masterid}")).status == 404


async def test_property_lists(served: tuple[Client, More]) -> None:
    client, more = served
    rows = more.rows
    body = await _get(client, f"builds/{rows.build_ok}/property_list?order=-name")
    assert body == {
        "_properties": [
            {"name": "workername", "source": "Worker", "value": '"w1"'},
            {"name": "branch", "source": "Build", "value": '"main"'},
        ],
        "meta": {"total": 2},
    }
    body = await _get(client, f"buildsets/{rows.bsid1}/properties_list?source=Force")
    assert body["_properties"] == [{"name": "owner", "source": "Force", "value": '"me"'}]
    body = await _get(client, f"changes/{rows.changeid}/properties_list")
    assert body == {"_properties": [], "meta": {"total": 0}}
    assert (await _get(client, "builds/999/property_list"))["_properties"] == []

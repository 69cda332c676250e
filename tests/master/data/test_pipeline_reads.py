"""Reads of builds, steps, logs, requests, sets, changes, stamps, workers, schedulers and
change sources through the DataAPI, over rows written by the real write path."""

from __future__ import annotations

from typing import Any

import pytest

from buildyard.master.data.api import DataAPI
from buildyard.master.data.errors import InvalidQuery, NotFound
from buildyard.master.data.resources.base import Collection
from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.testing.clock import FakeClock
from tests.master.data.pipeline_rows import STDIO, Rows, write_rows

START = 1_700_000_000


@pytest.fixture
async def rows(updates: Updates, database: Database, clock: FakeClock) -> Rows:
    return await write_rows(updates, database, clock)


@pytest.fixture
def api(database: Database) -> DataAPI:
    return DataAPI(db=database)


async def many(api: DataAPI, path: str, **args: str | list[str]) -> Collection:
    result = await api.get_with_args(
        path, {k: v if isinstance(v, list) else [v] for k, v in args.items()}
    )
    assert isinstance(result, Collection)
    return result


async def one(api: DataAPI, path: str) -> dict[str, Any]:
    result = await api.get(path)
    assert isinstance(result, dict)
    return result


def ids(c: Collection, key: str) -> list[Any]:
    return [i[key] for i in c.items]


# -- builds ----------------------------------------------------------------------------------


async def test_build_has_the_api_shape(api: DataAPI, rows: Rows) -> None:
    assert await one(api, f"builds/{rows.build_ok}") == {
        "buildid": rows.build_ok,
        "number": 1,
        "builderid": rows.b1,
        "buildrequestid": rows.brids[0],
        "workerid": rows.w1,
        "masterid": rows.masterid,
        "started_at": START + 20,
        "complete": True,
        "complete_at": START + 20,
        "locks_duration_s": 0,
        "results": 0,
        "state_string": "created",
        "properties": {},
    }


async def test_builds_filters_order_and_paging(api: DataAPI, rows: Rows) -> None:
    everything = await many(api, "builds")
    assert ids(everything, "buildid") == [rows.build_ok, rows.build_bad, rows.build_running]
    assert everything.total == 3
    done = await many(api, "builds", complete="true")
    assert ids(done, "buildid") == [rows.build_ok, rows.build_bad]
    assert done.total == 2
    running = await many(api, "builds", complete="false")
    assert ids(running, "buildid") == [rows.build_running]
    not_ok = await many(api, "builds", results__ne="0")
    assert ids(not_ok, "buildid") == [rows.build_bad]
    newest = await many(api, "builds", order="-started_at", limit="2", offset="1")
    assert ids(newest, "buildid") == [rows.build_bad, rows.build_ok]
    assert newest.total == 3
    numbered = await many(
        api, "builds", builderid=str(rows.b1), number__eq=["1", "2", "3"], order="-number"
    )
    assert ids(numbered, "number") == [2, 1]
    some = await many(api, "builds", field=["buildid", "complete"], complete="true", limit="1")
    assert some.items == [{"buildid": rows.build_ok, "complete": True}]
    assert some.total == 2


async def test_builds_scoped_by_builder_request_and_worker(api: DataAPI, rows: Rows) -> None:
    assert ids(await many(api, f"builders/{rows.b1}/builds"), "number") == [1, 2]
    assert ids(await many(api, "builders/b2/builds"), "buildid") == [rows.build_running]
    assert (await many(api, "builders/nobody/builds")).items == []
    by_request = await many(api, f"buildrequests/{rows.brids[2]}/builds")
    assert ids(by_request, "buildid") == [rows.build_bad]
    assert ids(await many(api, f"workers/{rows.w2}/builds"), "buildid") == [rows.build_running]
    assert (await one(api, f"builders/{rows.b1}/builds/2"))["buildid"] == rows.build_bad
    assert (await one(api, "builders/b1/builds/1"))["buildid"] == rows.build_ok


async def test_builds_fill_only_the_properties_asked_for(api: DataAPI, rows: Rows) -> None:
    picked = await many(api, "builds", property="branch", buildid=str(rows.build_ok))
    assert picked.items[0]["properties"] == {"branch": ["main", "Build"]}
    every = await many(api, "builds", property="*", buildid=str(rows.build_ok))
    assert every.items[0]["properties"] == {
        "branch": ["main", "Build"],
        "workername": ["w1", "Worker"],
    }
    assert (await many(api, "builds", buildid=str(rows.build_ok))).items[0]["properties"] == {}


async def test_build_properties_in_buildbot_shape(api: DataAPI, rows: Rows) -> None:
    assert await one(api, f"builds/{rows.build_ok}/properties") == {
        "branch": ["main", "Build"],
        "workername": ["w1", "Worker"],
    }
    assert await one(api, f"builders/{rows.b1}/builds/2/properties") == {}
    assert await one(api, f"buildsets/{rows.bsid1}/properties") == {
        "owner": ["me", "Force"],
        "branch": ["main", "Scheduler"],
    }
    with pytest.raises(NotFound):
        await api.get("builds/999/properties")


@pytest.mark.parametrize(
    "path",
    [
        "builds/999",
        "builders/999/builds/1",
        "builders/b1/builds/99",
        "builders/nobody/builds/1",
        "steps/999",
        "builds/999/steps/0",
        "logs/999",
        "logs/999/contents",
        "buildrequests/999",
        "buildsets/999",
        "changes/999",
        "sourcestamps/999",
        "workers/999",
        "workers/nobody",
        "schedulers/999",
        "changesources/999",
    ],
)
async def test_unknown_items_are_not_found(api: DataAPI, rows: Rows, path: str) -> None:
    with pytest.raises(NotFound):
        await api.get_with_args(path, {})


@pytest.mark.parametrize(
    ("path", "args"),
    [
        ("builds", {"complete": ["maybe"]}),
        ("builds", {"results": ["bad"]}),
        ("builds", {"bogus": ["1"]}),
        ("builds", {"field": ["nope"]}),
        ("builds", {"order": ["nope"]}),
        ("builds/1", {"complete": ["true"]}),
        ("steps/1", {"name": ["x"]}),
        ("buildrequests", {"claimed": ["perhaps"]}),
        ("workers", {"paused": ["2"]}),
        ("logs/1/contents", {"offset": ["x"]}),
    ],
)
async def test_bad_arguments_are_invalid(
    api: DataAPI, rows: Rows, path: str, args: dict[str, list[str]]
) -> None:
    with pytest.raises(InvalidQuery):
        await api.get_with_args(path, args)


# -- steps and logs --------------------------------------------------------------------------


async def test_steps_of_a_build_in_every_form(api: DataAPI, rows: Rows) -> None:
    steps = await many(api, f"builds/{rows.build_ok}/steps")
    assert steps.total == 2
    assert steps.items[1] == {
        "stepid": rows.test_step,
        "number": 1,
        "name": "test",
        "buildid": rows.build_ok,
        "started_at": None,
        "locks_acquired_at": None,
        "complete": True,
        "complete_at": START + 20,
        "results": 1,
        "state_string": "pending",
        "urls": [{"name": "report", "url": "http://x/report"}],
        "hidden": True,
    }
    for prefix in (f"builders/{rows.b1}/builds/1", "builders/b1/builds/1"):
        assert ids(await many(api, f"{prefix}/steps"), "name") == ["compile", "test"]
        assert (await one(api, f"{prefix}/steps/test"))["stepid"] == rows.test_step
        assert (await one(api, f"{prefix}/steps/0"))["stepid"] == rows.compile_step
    assert (await one(api, f"steps/{rows.compile_step}"))["name"] == "compile"
    assert (await one(api, f"builds/{rows.build_ok}/steps/1"))["name"] == "test"
    paged = await many(api, f"builds/{rows.build_ok}/steps", order="-number", limit="1")
    assert ids(paged, "name") == ["test"]
    assert paged.total == 2
    assert ids(await many(api, f"builds/{rows.build_ok}/steps", number__eq="0"), "name") == [
        "compile"
    ]
    assert (await many(api, f"builds/{rows.build_bad}/steps")).items == []


async def test_logs_of_a_step_in_every_form(api: DataAPI, rows: Rows) -> None:
    logs = await many(api, f"steps/{rows.compile_step}/logs")
    assert logs.items == [
        {
            "logid": rows.stdio_log,
            "name": "stdio",
            "slug": "stdio",
            "stepid": rows.compile_step,
            "complete": True,
            "num_lines": 4,
            "type": "s",
        },
        {
            "logid": rows.summary_log,
            "name": "build summary",
            "slug": "build_summary",
            "stepid": rows.compile_step,
            "complete": False,
            "num_lines": 5,
            "type": "t",
        },
    ]
    assert logs.total == 2
    by_slug = await many(api, f"steps/{rows.compile_step}/logs", slug__eq="build_summary")
    assert ids(by_slug, "logid") == [rows.summary_log]
    for path in (
        f"logs/{rows.summary_log}",
        f"steps/{rows.compile_step}/logs/build_summary",
        f"builds/{rows.build_ok}/steps/compile/logs/build_summary",
        f"builds/{rows.build_ok}/steps/0/logs/build_summary",
        "builders/b1/builds/1/steps/compile/logs/build_summary",
    ):
        assert (await one(api, path))["logid"] == rows.summary_log
    assert ids(await many(api, f"builds/{rows.build_ok}/steps/0/logs"), "slug") == [
        "stdio",
        "build_summary",
    ]


async def test_log_contents_count_lines(api: DataAPI, rows: Rows) -> None:
    whole = await many(api, f"logs/{rows.stdio_log}/contents")
    assert whole.items == [{"logid": rows.stdio_log, "firstline": 0, "content": STDIO}]
    assert whole.total is None
    part = await many(api, f"logs/{rows.summary_log}/contents", offset="1", limit="2")
    assert part.items == [
        {"logid": rows.summary_log, "firstline": 1, "content": "line 1\nline 2\n"}
    ]
    tail = await many(
        api, f"steps/{rows.compile_step}/logs/build_summary/contents", offset="3", limit="100"
    )
    assert tail.items[0]["content"] == "line 3\nline 4\n"
    with pytest.raises(NotFound):
        await many(api, f"logs/{rows.summary_log}/contents", offset="7")
    with pytest.raises(NotFound):
        await many(api, f"logs/{rows.summary_log}/contents", limit="0")


async def test_raw_log_streams_batches_without_tags(
    api: DataAPI, database: Database, rows: Rows
) -> None:
    from buildyard.master.data.resources import logs

    raw = await api.raw_log(f"builds/{rows.build_ok}/steps/compile/logs/stdio")
    assert raw.filename == "b1_build_1_step_compile_log_stdio"
    assert raw.content_type == "text/plain"
    pieces = [p async for p in logs.raw_chunks(database, raw, batch=1)]
    assert pieces == [
        "Builder: b1\nBuild number: 1\nWorker name: w1\n",
        "running make\ncompiling\noops: warning\ndone\n",  # one stored chunk
    ]
    text = await api.raw_log(f"logs/{rows.summary_log}")
    assert "".join([p async for p in api.raw_log_text(text)]) == "".join(
        f"line {i}\n" for i in range(5)
    )
    with pytest.raises(NotFound):
        await api.raw_log("logs/999")
    with pytest.raises(NotFound):
        await api.raw_log(f"builds/{rows.build_ok}")


# -- requests, sets, changes, stamps ---------------------------------------------------------


async def test_buildrequests_special_and_plain_filters(api: DataAPI, rows: Rows) -> None:
    r1, r2, r3 = rows.brids
    everything = await many(api, "buildrequests")
    assert ids(everything, "buildrequestid") == [r1, r2, r3]
    assert everything.items[0] == {
        "buildrequestid": r1,
        "buildsetid": rows.bsid1,
        "builderid": rows.b1,
        "priority": 0,
        "claimed": True,
        "claimed_at": START + 10,
        "claimed_by_masterid": rows.masterid,
        "complete": True,
        "results": 0,
        "submitted_at": START,
        "complete_at": START + 20,
        "waited_for": False,
        "properties": None,
    }
    assert ids(await many(api, "buildrequests", complete="false"), "buildrequestid") == [r2]
    assert (await many(api, "buildrequests", claimed="false")).items == []
    assert (await many(api, "buildrequests", claimed="true")).total == 3
    assert ids(
        await many(api, f"builders/{rows.b1}/buildrequests", order="-buildrequestid"),
        "buildrequestid",
    ) == [r3, r1]
    by_set = await many(api, "buildrequests", buildsetid=str(rows.bsid1), limit="1", offset="1")
    assert ids(by_set, "buildrequestid") == [r2]
    assert by_set.total == 2
    with_props = await many(api, "buildrequests", property="owner", buildrequestid=str(r1))
    assert with_props.items[0]["properties"] == {"owner": ["me", "Force"]}
    assert (await one(api, f"buildrequests/{r3}"))["results"] == 2


async def test_buildsets_with_their_stamps(api: DataAPI, rows: Rows) -> None:
    bs = await one(api, f"buildsets/{rows.bsid2}")
    assert bs["reason"] == "second"
    assert bs["complete"] is True
    assert bs["results"] == 2
    assert [s["ssid"] for s in bs["sourcestamps"]] == [rows.ssid]
    incomplete = await many(api, "buildsets", complete="false")
    assert ids(incomplete, "bsid") == [rows.bsid1]
    newer = await many(api, "buildsets", bsid__gt=str(rows.bsid1), order="-bsid")
    assert ids(newer, "bsid") == [rows.bsid2]
    assert newer.total == 1


async def test_changes_and_sourcestamps(api: DataAPI, rows: Rows) -> None:
    change = await one(api, f"changes/{rows.changeid}")
    assert change["author"] == "alice"
    assert change["sourcestamp"]["ssid"] == rows.ssid
    assert set(change) == {
        "changeid",
        "parent_changeids",
        "author",
        "committer",
        "files",
        "comments",
        "revision",
        "when_timestamp",
        "branch",
        "category",
        "revlink",
        "properties",
        "repository",
        "project",
        "codebase",
        "sourcestamp",
    }
    assert ids(await many(api, "changes", order="-changeid", limit="5"), "changeid") == [
        rows.changeid
    ]
    assert (await many(api, "changes", author="bob")).total == 0
    assert ids(await many(api, f"builds/{rows.build_ok}/changes"), "changeid") == [rows.changeid]
    assert (await many(api, f"builds/{rows.build_ok}/changes", field="author")).items == [
        {"author": "alice"}
    ]
    assert ids(await many(api, f"sourcestamps/{rows.ssid}/changes"), "changeid") == [rows.changeid]
    stamp = await one(api, f"sourcestamps/{rows.ssid}")
    assert stamp == {
        "ssid": rows.ssid,
        "branch": "main",
        "revision": "abc",
        "repository": "r",
        "project": "p",
        "codebase": "",
        "patch": None,
        "created_at": START,
    }
    assert (await many(api, "sourcestamps", branch="main")).total == 1
    assert (await many(api, "sourcestamps", branch="other")).items == []
    assert ids(await many(api, f"buildsets/{rows.bsid1}/sourcestamps"), "ssid") == [rows.ssid]


# -- workers, schedulers, change sources -----------------------------------------------------


async def test_workers_everywhere(api: DataAPI, rows: Rows) -> None:
    w1 = await one(api, f"workers/{rows.w1}")
    assert w1 == {
        "workerid": rows.w1,
        "name": "w1",
        "connected_to": [{"masterid": rows.masterid}],
        "configured_on": [{"masterid": rows.masterid, "builderid": rows.b1}],
        "workerinfo": {"host": "h1"},
        "paused": False,
        "pause_reason": None,
        "graceful": False,
    }
    assert (await one(api, "workers/w2"))["workerid"] == rows.w2
    assert ids(await many(api, "workers", order="-name"), "name") == ["w2", "w1"]
    assert ids(await many(api, f"builders/{rows.b2}/workers"), "name") == ["w2"]
    assert (await many(api, f"masters/{rows.masterid}/workers")).total == 2
    scoped = await many(api, f"masters/{rows.masterid}/builders/{rows.b1}/workers")
    assert ids(scoped, "name") == ["w1"]
    assert (await many(api, "workers", paused="true")).items == []
    with pytest.raises(NotFound):
        await api.get(f"builders/{rows.b1}/workers/w2")
    assert (await one(api, f"masters/{rows.masterid}/workers/{rows.w1}"))["name"] == "w1"


async def test_schedulers_and_changesources_embed_their_master(api: DataAPI, rows: Rows) -> None:
    master = await one(api, f"masters/{rows.masterid}")
    assert await one(api, f"schedulers/{rows.schedulerid}") == {
        "schedulerid": rows.schedulerid,
        "name": "sch",
        "enabled": True,
        "master": master,
    }
    assert ids(await many(api, f"masters/{rows.masterid}/schedulers"), "name") == ["sch"]
    assert (await many(api, "schedulers", order="name", name="sch")).total == 1
    assert await one(api, f"changesources/{rows.changesourceid}") == {
        "changesourceid": rows.changesourceid,
        "name": "poller",
        "master": None,
    }
    assert (await many(api, f"masters/{rows.masterid}/changesources")).items == []
    with pytest.raises(NotFound):
        await api.get(f"masters/{rows.masterid}/changesources/{rows.changesourceid}")

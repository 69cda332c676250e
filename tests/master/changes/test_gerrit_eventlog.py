"""GerritEventLogPoller against a local HTTP server shaped like Gerrit's events-log plugin
(``GET /plugins/events-log/events/?t1=YYYY-MM-DD HH:MM:SS``: the events since then, one JSON
object a line) and its REST API (``GET /changes/<n>/revisions/<ps>/files/``, answered after
Gerrit's ``)]}'`` line), behind HTTP Basic authentication; and util.GerritChangeFilter."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from aiohttp import web

from buildyard.common.errors import ConfigErrors, collecting_config_errors
from buildyard.master.changes.base import ChangeSourceContext
from buildyard.master.changes.gerrit import GerritEventLogPoller, GerritEventLogPollerService
from buildyard.master.db.connector import Database
from buildyard.master.model.properties import Secret
from buildyard.master.schedulers.changefilter import GerritChangeFilter
from buildyard.testing.postgres import free_port
from tests.master.changes import gerrit_events as ev

USER, PASSWORD = "ci", "s3cret"


@dataclasses.dataclass
class FakeGerrit:
    url: str
    events: list[dict[str, Any]]
    requests: list[tuple[str, dict[str, str]]]
    fail: bool = False


@pytest.fixture
async def gerrit_http() -> AsyncIterator[FakeGerrit]:
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    server = FakeGerrit(url="", events=[], requests=[])

    async def events(request: web.Request) -> web.Response:
        server.requests.append((request.path, dict(request.query)))
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, text="Unauthorized")
        if server.fail:
            return web.Response(status=500, text="Internal server error")
        since = datetime.datetime.strptime(request.query["t1"], "%Y-%m-%d %H:%M:%S")
        start = since.replace(tzinfo=datetime.UTC).timestamp()
        lines = [json.dumps(e) for e in server.events if e["eventCreatedOn"] >= start]
        return web.Response(text="".join(line + "\n" for line in lines))

    async def files(request: web.Request) -> web.Response:
        server.requests.append((request.path, {}))
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, text="Unauthorized")
        answer = {
            "/COMMIT_MSG": {"status": "A", "lines_inserted": 9},
            "src/frob.c": {"lines_inserted": 3, "lines_deleted": 1},
        }
        return web.Response(text=")]}'\n" + json.dumps(answer))

    app = web.Application()
    app.router.add_get("/plugins/events-log/events/", events)
    app.router.add_get("/changes/{change}/revisions/{patchset}/files/", files)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def _poller(ctx: ChangeSourceContext, **kwargs: Any) -> GerritEventLogPollerService:
    config = GerritEventLogPoller(**kwargs)
    return config.make_service(config.name, ctx)


async def test_polls_make_changes_once_each(
    ctx: ChangeSourceContext, database: Database, gerrit_http: FakeGerrit
) -> None:
    now = int(ctx.clock.now())
    gerrit_http.events = [
        ev.patchset_created(now - 100),
        ev.ref_updated(now - 50),
        ev.comment_added(now - 40),  # not handled by default
    ]
    poller = _poller(
        ctx,
        baseURL=gerrit_http.url + "/",
        auth=(USER, Secret("gerrit_pw")),
        gitBaseURL="ssh://gerrit.example.org:29418",
        get_files=True,
    )
    secrets = {"gerrit_pw": PASSWORD}

    async def secret(name: str) -> str | None:
        return secrets.get(name)

    poller.ctx = dataclasses.replace(ctx, secret=secret)
    assert poller.name == f"GerritEventLogPoller:{gerrit_http.url}/"
    await poller.poll()
    found = await database.changes.get_changes()
    assert [(c.category, c.branch) for c in found] == [
        ("patchset-created", "refs/changes/45/12345/2"),
        ("ref-updated", "main"),
    ]
    created = found[0]
    assert created.repository == f"ssh://gerrit.example.org:29418/{ev.PROJECT}"
    assert sorted(created.files) == ["/COMMIT_MSG", "src/frob.c"]
    assert created.properties["event.source"] == ("GerritEventLogPoller", "Change")
    # the first poll looks back firstFetchLookback (30) days
    path, query = gerrit_http.requests[0]
    assert path == "/plugins/events-log/events/"
    lookback = datetime.datetime.fromtimestamp(now - 30 * 86400, datetime.UTC)
    assert query == {"t1": lookback.strftime("%Y-%m-%d %H:%M:%S")}
    assert ("/changes/12345/revisions/2/files/", {}) in gerrit_http.requests

    # the next poll starts at the last event's second; what it already handled is not repeated
    gerrit_http.events.append(ev.patchset_created(now - 10, number=3, revision=ev.REV2))
    await poller.poll()
    found = await database.changes.get_changes()
    assert len(found) == 3
    assert found[-1].revision == ev.REV2
    last_query = [q for p, q in gerrit_http.requests if p.startswith("/plugins")][-1]
    at = datetime.datetime.fromtimestamp(now - 40, datetime.UTC)
    assert last_query == {"t1": at.strftime("%Y-%m-%d %H:%M:%S")}
    objectid = await ctx.updates.get_object_id(poller.name, "GerritEventLogPoller")
    assert await ctx.updates.get_state(objectid, "last_event_ts") == now - 10


async def test_http_errors_and_bad_lines_are_logged_naming_the_poller(
    ctx: ChangeSourceContext, database: Database, gerrit_http: FakeGerrit
) -> None:
    now = int(ctx.clock.now())
    poller = _poller(ctx, baseURL=gerrit_http.url, auth=(USER, "wrong"), gitBaseURL="ssh://g:29418")
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
        gerrit_http.fail = True
        poller.config = GerritEventLogPoller(
            baseURL=gerrit_http.url, auth=(USER, PASSWORD), gitBaseURL="ssh://g:29418"
        )
        await poller.poll()
    failed = [e for e in logs if e["event"] == "gerrit_events_log_failed"]
    assert [(e["changesource"], e["status"]) for e in failed] == [
        (poller.name, 401),
        (poller.name, 500),
    ]
    gerrit_http.fail = False
    broken = ev.patchset_created(now - 5)
    del broken["change"]["owner"]
    gerrit_http.events = [broken, ev.ref_updated(now - 4)]
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [unusable] = [e for e in logs if e["event"] == "gerrit_event_unusable"]
    assert unusable["changesource"] == poller.name
    assert "owner" in unusable["error"]
    # the next event still made its change
    assert [c.category for c in await database.changes.get_changes()] == ["ref-updated"]


def test_event_log_poller_needs_base_url_and_git_base_url() -> None:
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        GerritEventLogPoller(baseURL="http://g", auth=None)
        GerritEventLogPoller(baseURL="http://g", auth="user:pw", gitBaseURL="ssh://g")
    assert [e.message for e in errors.errors] == [
        "GerritEventLogPoller: gitBaseURL must be specified",
        "GerritEventLogPoller: auth must be a (user, password) pair or None",
    ]


# -- GerritChangeFilter -------------------------------------------------------------------------


def _change(props: dict[str, Any], *, branch: str = "refs/changes/45/12345/2") -> dict[str, Any]:
    return {
        "changeid": 1,
        "author": "a",
        "committer": None,
        "comments": "",
        "branch": branch,
        "revision": "r",
        "revlink": "",
        "when_timestamp": 0,
        "category": props.get("event.type"),
        "repository": "",
        "codebase": "",
        "project": "p",
        "files": [],
        "properties": {k: (v, "Change") for k, v in props.items()},
        "sourcestamp": {},
        "parent_changeids": [],
    }


def test_gerrit_change_filter_looks_at_the_event_type_and_gerrit_branch() -> None:
    created = _change({"event.type": "patchset-created", "event.change.branch": "main"})
    merged = _change({"event.type": "change-merged", "event.change.branch": "stable"})
    pushed = _change({"event.type": "ref-updated"}, branch="main")
    by_type = GerritChangeFilter(eventtype="patchset-created")
    assert [by_type.filter_change(c) for c in (created, merged, pushed)] == [True, False, False]
    by_re = GerritChangeFilter(eventtype_re="^(change|ref)-")
    assert [by_re.filter_change(c) for c in (created, merged, pushed)] == [False, True, True]
    by_fn = GerritChangeFilter(eventtype_fn=lambda t: t.endswith("-merged"))
    assert [by_fn.filter_change(c) for c in (created, merged, pushed)] == [False, True, False]
    # branch is the Gerrit branch, not the change's (refs/changes/...) branch
    on_main = GerritChangeFilter(branch="main")
    assert [on_main.filter_change(c) for c in (created, merged, pushed)] == [True, False, False]
    on_re = GerritChangeFilter(branch_re="^st")
    assert [on_re.filter_change(c) for c in (created, merged, pushed)] == [False, True, False]
    on_fn = GerritChangeFilter(branch_fn=lambda b: b == "")  # no event.change.branch
    assert [on_fn.filter_change(c) for c in (created, merged, pushed)] == [False, False, True]
    # and ChangeFilter's own keywords still apply
    both = GerritChangeFilter(eventtype="patchset-created", project="other")
    assert not both.filter_change(created)
    assert repr(GerritChangeFilter(eventtype="x", branch_fn=len)) == (
        "<GerritChangeFilter on event.type in ['x'] and len(branch)>"
    )
    assert GerritChangeFilter(eventtype="x") == GerritChangeFilter(eventtype="x")

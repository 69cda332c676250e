"""GerritChangeSource against a real sshd on loopback (Debian's openssh-server) whose forced
command plays ``gerrit stream-events`` and ``gerrit query``: the changes it records, the builds
they start on a running master, bad lines, lost connections, refused keys, and catching up
through the events-log plugin's HTTP API."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web

from buildyard.master.changes.base import ChangeSourceContext
from buildyard.master.changes.gerrit import (
    GerritChangeSource,
    GerritChangeSourceService,
    event_hash,
)
from buildyard.master.changes.manager import ChangeManager
from buildyard.master.db.connector import Database
from buildyard.master.model.properties import Secret
from buildyard.master.model.results import Results
from buildyard.testing.clock import FakeClock
from buildyard.testing.gerrit import GerritSshd, gerrit_sshd, sshd_available
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import eventually
from tests.master.changes import gerrit_events as ev

pytestmark = pytest.mark.skipif(
    not sshd_available(), reason="needs Debian's openssh-server and root (.ci/run installs it)"
)


@pytest.fixture
def gerrit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GerritSshd]:
    with gerrit_sshd(tmp_path / "gerrit") as server:
        # ssh trusts this server's host key (the change source runs "ssh" from PATH)
        monkeypatch.setenv("PATH", f"{server.ssh_wrapper}{os.pathsep}{os.environ['PATH']}")
        yield server


def _source_args(gerrit: GerritSshd, **kwargs: Any) -> dict[str, Any]:
    return {
        "gerritserver": "127.0.0.1",
        "username": gerrit.user,
        "gerritport": gerrit.port,
        "identity_file": str(gerrit.identity),
        **kwargs,
    }


async def test_stream_events_make_changes_and_builds(tmp_path: Path, gerrit: GerritSshd) -> None:
    gerrit.answer_queries(ev.query_answer())
    config = f"""
c['change_source'] = [changes.GerritChangeSource(
    '127.0.0.1', {gerrit.user!r}, gerritport={gerrit.port}, identity_file={str(gerrit.identity)!r},
    handled_events=['patchset-created', 'ref-updated', 'comment-added', 'change-merged'],
    get_files=True)]
c['builders'] = [
    util.BuilderConfig(name='verify', workernames=['w1'], factory=util.BuildFactory([
        steps.ShellCommand(name='ref', command=['echo', util.Property('event.patchSet.ref')])])),
    util.BuilderConfig(name='merged', workernames=['w1'], factory=util.BuildFactory([
        steps.ShellCommand(name='rev', command=['echo', util.Property('event.newRev')])])),
]
c['schedulers'] = [
    schedulers.AnyBranchScheduler(name='verify', builderNames=['verify'], treeStableTimer=None,
        change_filter=util.GerritChangeFilter(eventtype='patchset-created')),
    schedulers.AnyBranchScheduler(name='merged', builderNames=['merged'], treeStableTimer=None,
        change_filter=util.GerritChangeFilter(eventtype_re='^change-', branch='main')),
]
"""
    created = ev.patchset_created(1_700_000_200)
    name = f"GerritChangeSource:{gerrit.user}@127.0.0.1:{gerrit.port}"
    with structlog.testing.capture_logs() as logs:
        async with running_master(tmp_path, config) as run:
            db = run.master.db
            await eventually(lambda: gerrit.connections() == 1, within=60)
            gerrit.send(
                "this is not JSON",
                created,
                {"no": "type"},
                ev.ref_updated(1_700_000_201),
                # built by its patchset-created event
                ev.ref_updated(1_700_000_202, "refs/changes/45/12345/2"),
                ev.comment_added(1_700_000_203),
                ev.change_merged(1_700_000_204),
                created,  # the same event again: one change
                {"type": "ref-replicated", "eventCreatedOn": 1_700_000_205},  # not handled
            )

            async def recorded() -> bool:
                return len(await db.changes.get_changes()) == 4

            await eventually(recorded, within=60)

            async def built() -> bool:
                return len(await db.builds.get_builds(complete=True)) == 2

            await eventually(built, within=120)
            found = await db.changes.get_changes()
            builds = await db.builds.get_builds(complete=True)
            verify_id = await run.master.data.updates.find_builder_id("verify")
            [verify] = [b for b in builds if b.builderid == verify_id]
            [merged] = [b for b in builds if b.builderid != verify_id]
            verify_props = await db.builds.get_build_properties(verify.id)
            verify_log = (await run.result(verify.id)).stdout("ref")
            merged_log = (await run.result(merged.id)).stdout("rev")

            # the connection drops: the source reconnects (after 0.5 s) and goes on
            gerrit.drop()
            await eventually(lambda: gerrit.connections() == 2, within=60)
            gerrit.send(ev.patchset_created(1_700_000_300, number=3, revision=ev.REV2))

            async def five() -> bool:
                return len(await db.changes.get_changes()) == 5

            await eventually(five, within=60)
            last = (await db.changes.get_changes())[-1]

    by_category = {c.category or "": c for c in found}
    assert sorted(by_category) == [
        "change-merged",
        "comment-added",
        "patchset-created",
        "ref-updated",
    ]
    change = by_category["patchset-created"]
    assert (change.author, change.committer) == ("Ann Author <ann@example.org>", None)
    assert change.project == ev.PROJECT
    assert change.repository == f"ssh://{gerrit.user}@127.0.0.1:{gerrit.port}/{ev.PROJECT}"
    assert change.branch == "refs/changes/45/12345/2"
    assert change.revision == ev.REV1
    assert change.revlink == f"https://gerrit.example.org/c/{ev.PROJECT}/+/12345"
    assert change.comments == "Fix the frobnicator"
    # get_files: the patch set's files from ``gerrit query``
    assert sorted(change.files) == ["/COMMIT_MSG", "src/frob.c"]
    assert change.codebase == ""
    props = change.properties
    assert props["event.type"] == ("patchset-created", "Change")
    assert props["event.change.number"] == (12345, "Change")
    assert props["event.change.owner.email"] == ("ann@example.org", "Change")
    assert props["event.patchSet.ref"] == ("refs/changes/45/12345/2", "Change")
    assert props["event.patchSet.parents"] == ([ev.OLD], "Change")
    assert props["event.source"] == ("GerritChangeSource", "Change")
    assert props["target_branch"] == ("main", "Change")
    assert "event.eventCreatedOn" not in props
    assert set(props) == {
        *(k for k in _flat(created) if k != "event.eventCreatedOn"),
        "event.source",
        "target_branch",
    }

    pushed = by_category["ref-updated"]
    assert (pushed.author, pushed.branch, pushed.revision) == (
        "Bob Reviewer <bob@example.org>",
        "main",
        ev.REV2,
    )
    assert (pushed.comments, pushed.files) == ("Gerrit: commit(s) pushed.", ("unknown",))
    assert "target_branch" not in pushed.properties
    # comment-added: its patch set's ref; change-merged: the change's branch
    assert by_category["comment-added"].branch == "refs/changes/45/12345/2"
    approvals: Any = by_category["comment-added"].properties["event.approvals"][0]
    assert approvals[0]["value"] == "2"
    assert by_category["change-merged"].branch == "main"
    assert by_category["change-merged"].author == "Ann Author <ann@example.org>"

    # the filters chose the builds, and the build sees the event's properties
    assert (verify.results, merged.results) == (Results.SUCCESS, Results.SUCCESS)
    assert verify_props["event.change.id"][0] == "I0123456789abcdef0123456789abcdef01234567"
    assert "refs/changes/45/12345/2" in verify_log
    assert ev.REV2 in merged_log

    # the query asked for the files, as Buildbot asks
    assert "gerrit query 12345 --format JSON --files --patch-sets" in gerrit.commands()

    # bad lines are logged, naming the source; the stream went on
    bad = [e for e in logs if e["event"] in ("gerrit_bad_json_line", "gerrit_not_an_event")]
    assert [(e["event"], e["changesource"]) for e in bad] == [
        ("gerrit_bad_json_line", name),
        ("gerrit_not_an_event", name),
    ]
    [failed] = [e for e in logs if e["event"] == "gerrit_stream_failed"]
    assert failed["changesource"] == name
    assert failed["retry_in"] == 0.5
    assert "connection dropped by the test" in failed["last_lines"]
    assert (last.branch, last.revision) == ("refs/changes/45/12345/3", ev.REV2)


def _flat(event: dict[str, Any], base: str = "event") -> list[str]:
    names: list[str] = []
    for key, value in event.items():
        if isinstance(value, dict):
            names += _flat(value, f"{base}.{key}")
        else:
            names.append(f"{base}.{key}")
    return names


# -- the service on its own (a fake clock drives the waits between connections) ---------------


@pytest.fixture
async def service_factory(ctx: ChangeSourceContext) -> AsyncIterator[Any]:
    started: list[GerritChangeSourceService] = []

    async def make(
        context: ChangeSourceContext | None = None, **kwargs: Any
    ) -> GerritChangeSourceService:
        config = GerritChangeSource(**kwargs)
        service = config.make_service(config.name, context or ctx)
        await service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop()


async def test_a_refused_key_is_logged_and_retried_with_backoff(
    gerrit: GerritSshd, service_factory: Any, clock: FakeClock, database: Database
) -> None:
    with structlog.testing.capture_logs() as logs:
        service = await service_factory(
            **_source_args(gerrit, identity_file=str(gerrit.other_identity))
        )

        def failures() -> list[Any]:
            return [e for e in logs if e["event"] == "gerrit_stream_failed"]

        await eventually(lambda: len(failures()) == 1 and clock.sleepers == 1, within=60)
        clock.advance(0.5)
        await eventually(lambda: len(failures()) == 2 and clock.sleepers == 1, within=60)
        clock.advance(0.75)
        await eventually(lambda: len(failures()) == 3, within=60)
    first, second, third = failures()
    assert [f["retry_in"] for f in (first, second, third)] == [0.5, 0.75, 1.12]
    assert first["changesource"] == service.name
    assert first["exit_code"] == 255
    assert any("Permission denied" in line for line in first["last_lines"])
    assert gerrit.connections() == 0
    assert await database.changes.get_changes() == []


async def _events_log(
    events: list[dict[str, Any]], seen: list[tuple[str, str, str | None]]
) -> tuple[web.AppRunner, int]:
    """The events-log plugin's endpoint: every event, whatever ``t1`` (as a plugin whose log
    starts after t1 would not be; the source must drop what it already handled)."""

    async def handle(request: web.Request) -> web.Response:
        seen.append(
            (request.path, request.query.get("t1", ""), request.headers.get("Authorization"))
        )
        return web.Response(text="".join(json.dumps(e) + "\n" for e in events))

    app = web.Application()
    app.router.add_get("/a/plugins/events-log/events/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_a_reconnection_catches_up_through_the_events_log(
    gerrit: GerritSshd,
    service_factory: Any,
    ctx: ChangeSourceContext,
    database: Database,
) -> None:
    handled = ev.patchset_created(1_700_000_100)
    missed = ev.ref_updated(1_700_000_150)
    both = ev.patchset_created(1_700_000_200, number=3, revision=ev.REV2)
    seen: list[tuple[str, str, str | None]] = []
    runner, port = await _events_log([handled, missed, both], seen)
    try:
        # a previous run handled the first event (Buildbot's state: its time and hash)
        config = GerritChangeSource(**_source_args(gerrit))
        objectid = await ctx.updates.get_object_id(config.name, "GerritChangeSource")
        await ctx.updates.set_state(objectid, "last_event_ts", 1_700_000_100)
        await ctx.updates.set_state(objectid, "last_event_hashes", [event_hash(handled)])
        service = await service_factory(
            **_source_args(gerrit, http_url=f"http://127.0.0.1:{port}", http_auth=("ci", "pw"))
        )

        async def two() -> bool:
            return len(await database.changes.get_changes()) == 2

        await eventually(two, within=60)
        await eventually(lambda: gerrit.connections() == 1, within=60)
        # the stream gives again what the log gave, then something new
        gerrit.send(
            both, ev.comment_added(1_700_000_300), ev.ref_updated(1_700_000_301, "refs/heads/dev")
        )

        async def three() -> bool:
            return len(await database.changes.get_changes()) == 3

        await eventually(three, within=60)
        found = await database.changes.get_changes()
        assert service.last_event_ts == 1_700_000_301
    finally:
        await runner.cleanup()
    assert [(c.category, c.branch) for c in found] == [
        ("ref-updated", "main"),
        ("patchset-created", "refs/changes/45/12345/3"),
        ("ref-updated", "dev"),
    ]
    path, t1, auth = seen[0]
    assert path == "/a/plugins/events-log/events/"
    assert t1 == "2023-11-14 22:15:00"  # 1_700_000_100 in UTC
    assert auth == "Basic " + base64.b64encode(b"ci:pw").decode()
    # what it handled last is kept for the next start
    assert await ctx.updates.get_state(objectid, "last_event_ts") == 1_700_000_301
    assert await ctx.updates.get_state(objectid, "last_event_hashes") == [
        event_hash(ev.ref_updated(1_700_000_301, "refs/heads/dev"))
    ]


async def test_the_change_manager_runs_it_and_a_reconfig_reconnects(
    gerrit: GerritSshd, ctx: ChangeSourceContext, database: Database
) -> None:
    manager = ChangeManager(ctx)
    config = GerritChangeSource(**_source_args(gerrit))
    await manager.start()
    try:
        with structlog.testing.capture_logs() as logs:
            assert (await manager.apply({config.name: config})).added == (config.name,)
            await eventually(lambda: gerrit.connections() == 1, within=60)
            service = manager.child(config.name)
            assert isinstance(service, GerritChangeSourceService)
            assert service.describe() == (
                f"GerritChangeSource watching the remote Gerrit repository {gerrit.user}@127.0.0.1"
            )
            # new settings (the same name): the stream restarts at once with them
            again = GerritChangeSource(**_source_args(gerrit, handled_events=["ref-updated"]))
            assert (await manager.apply({again.name: again})).updated == (config.name,)
            await eventually(lambda: gerrit.connections() == 2, within=60)
            gerrit.send(ev.patchset_created(1_700_000_700), ev.ref_updated(1_700_000_701))

            async def one() -> bool:
                return len(await database.changes.get_changes()) == 1

            await eventually(one, within=60)
    finally:
        await manager.stop()
    # ssh ended with the service: the stream program on the server saw the connection go
    await eventually(lambda: gerrit.streams_running() == 0, within=30)
    assert [c.category for c in await database.changes.get_changes()] == ["ref-updated"]
    assert not [e for e in logs if e["event"] == "gerrit_stream_failed"]
    assert [e["why"] for e in logs if e["event"] == "gerrit_stream_restarted"] == ["reconfigured"]


async def test_a_silent_stream_is_checked_against_the_events_log(
    gerrit: GerritSshd,
    service_factory: Any,
    ctx: ChangeSourceContext,
    database: Database,
) -> None:
    events: list[dict[str, Any]] = []
    seen: list[tuple[str, str, str | None]] = []
    runner, port = await _events_log(events, seen)
    secrets = {"gerrit_http": "pw"}

    async def secret(name: str) -> str | None:
        return secrets.get(name)

    try:
        with structlog.testing.capture_logs() as logs:
            service = await service_factory(
                dataclasses.replace(ctx, secret=secret),
                **_source_args(
                    gerrit,
                    http_url=f"http://127.0.0.1:{port}/",
                    http_auth=("ci", Secret("gerrit_http")),
                    http_poll_interval=1,
                ),
            )
            await eventually(lambda: gerrit.connections() == 1 and len(seen) >= 1, within=60)
            # an event reaches the log but not the stream (as when the stream broke silently)
            events.append(ev.ref_updated(int(ctx.clock.now()) + 5))

            async def one() -> bool:
                return len(await database.changes.get_changes()) == 1

            await eventually(one, within=60)
            # the stream is restarted
            await eventually(lambda: gerrit.connections() == 2, within=60)
    finally:
        await runner.cleanup()
    assert [e["changesource"] for e in logs if e["event"] == "gerrit_stream_stale"] == [
        service.name
    ]
    assert [e["why"] for e in logs if e["event"] == "gerrit_stream_restarted"] == ["stale"]
    assert not [e for e in logs if e["event"] == "gerrit_stream_failed"]
    assert {auth for _, _, auth in seen} == {"Basic " + base64.b64encode(b"ci:pw").decode()}
    assert (await database.changes.get_changes())[0].category == "ref-updated"


async def test_an_overlong_line_is_dropped_and_the_stream_goes_on(
    gerrit: GerritSshd,
    service_factory: Any,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(GerritChangeSourceService, "line_limit", 4096)
    with structlog.testing.capture_logs() as logs:
        service = await service_factory(**_source_args(gerrit))
        await eventually(lambda: gerrit.connections() == 1, within=60)
        gerrit.send('{"type": "' + "x" * 20_000 + '"}', ev.ref_updated(1_700_000_800))

        async def one() -> bool:
            return len(await database.changes.get_changes()) == 1

        await eventually(one, within=60)
    [too_long] = [e for e in logs if e["event"] == "gerrit_line_too_long"]
    assert (too_long["changesource"], too_long["stream"]) == (service.name, "stdout")
    assert gerrit.connections() == 1  # the same connection

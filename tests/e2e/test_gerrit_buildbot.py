"""GerritChangeSource side by side with stock Buildbot 4.3.0: a Buildbot master and a buildyard
master, same master.cfg, both listening to ``gerrit stream-events`` on one real sshd (Debian's
openssh-server on loopback, its forced command playing Gerrit), record the same changes from the
same events (every field and property, read through each one's REST API), the patch set files
coming from ``gerrit query`` for both.

Where buildyard differs on purpose, the test says why.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp import web

from buildyard.testing.gerrit import GerritSshd, gerrit_sshd, sshd_available
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually, wait_for
from tests.e2e.test_change_hooks_buildbot import Master, _comparable, _start
from tests.master.changes import gerrit_events as ev

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("gerrit"),  # one worker starts the module's sshd and two masters
    pytest.mark.skipif(
        not sshd_available(), reason="needs Debian's openssh-server and root (.ci/run installs it)"
    ),
]

CONFIG = """\
from buildbot.plugins import *

c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {worker_port}}}}}
c['builders'] = [
    util.BuilderConfig(name='b', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
]
c['schedulers'] = [schedulers.AnyBranchScheduler(name='all', builderNames=['b'])]
c['change_source'] = [changes.GerritChangeSource(
    '127.0.0.1', USER, gerritport=PORT, identity_file=IDENTITY,
    handled_events=['patchset-created', 'ref-updated', 'comment-added', 'change-merged'],
    get_files=True)]
c['www'] = {{'port': 'tcp:{www_port}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotNetUsageData'] = None
"""


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GerritSshd, Master, Master]]:
    root = tmp_path_factory.mktemp("gerrit-twins")
    with gerrit_sshd(root / "gerrit") as gerrit:
        gerrit.answer_queries(ev.query_answer())
        config = (
            CONFIG.replace("USER", repr(gerrit.user))
            .replace("PORT", str(gerrit.port))
            .replace("IDENTITY", repr(str(gerrit.identity)))
        )
        # both masters run "ssh" from PATH: the wrapper that trusts this sshd's host key
        path = f"{gerrit.ssh_wrapper}{os.pathsep}{os.environ['PATH']}"
        with mock.patch.dict(os.environ, {"PATH": path}):
            buildbot = _start("buildbot", root / "buildbot", config)
            try:
                buildyard = _start("buildyard", root / "buildyard", config)
            except BaseException:
                end_popen(buildbot.proc)
                raise
        try:
            if not wait_for(lambda: gerrit.connections() == 2, timeout=120):
                raise RuntimeError(f"the masters did not both connect: {gerrit.commands()}")
            yield gerrit, buildbot, buildyard
        finally:
            end_popen(buildyard.proc)
            end_popen(buildbot.proc)


def _send_both(
    twins: tuple[GerritSshd, Master, Master],
    *events: dict[str, Any] | str,
    expect: int | tuple[int, int],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Stream the events to both masters; the changes each recorded (``expect`` from each, or
    (from Buildbot, from buildyard))."""
    counts = expect if isinstance(expect, tuple) else (expect, expect)
    gerrit, buildbot, buildyard = twins
    before = [m.last_changeid() for m in (buildbot, buildyard)]
    start = int(time.time())
    gerrit.send(*events)
    found: list[list[dict[str, Any]]] = [[], []]

    def recorded() -> bool:
        for i, (master, after) in enumerate(zip((buildbot, buildyard), before, strict=True)):
            found[i] = master.changes(after)
        return all(len(f) >= n for f, n in zip(found, counts, strict=True))

    assert wait_for(recorded, timeout=60), f"changes after 60 s: {[len(f) for f in found]}"
    end = int(time.time()) + 1
    # Buildbot does not wait for one event's change (its ``gerrit query`` for the files) before
    # the next event's: its changes may be recorded in another order. Compare in one order.
    theirs, ours = (sorted((_comparable(c) for c in f), key=_order) for f in found)
    for change in [*theirs, *ours]:
        # no time in what Gerrit streams for a change: each master stamps "now"
        assert start <= change.pop("when_timestamp") <= end
    return theirs, ours


def _order(change: dict[str, Any]) -> str:
    return json.dumps([change["properties"]["event.type"], change["branch"], change["author"]])


def _differences(theirs: list[dict[str, Any]], ours: list[dict[str, Any]]) -> list[str]:
    assert len(ours) == len(theirs), f"buildbot recorded {len(theirs)}, buildyard {len(ours)}"
    return [
        f"change {i} {key}: buildbot {theirs[i].get(key)!r}, buildyard {ours[i].get(key)!r}"
        for i in range(len(ours))
        for key in sorted(set(ours[i]) | set(theirs[i]))
        if ours[i].get(key) != theirs[i].get(key)
    ]


def test_the_same_events_make_the_same_changes(twins: tuple[GerritSshd, Master, Master]) -> None:
    nameless = ev.ref_updated(1_700_000_406, "refs/heads/feature", submitter=ev.NAMELESS)
    theirs, ours = _send_both(
        twins,
        "this is not JSON",
        ev.patchset_created(1_700_000_400),
        {"no": "type"},
        ev.ref_updated(1_700_000_401),
        ev.ref_updated(1_700_000_402, "refs/changes/45/12345/2"),  # left to patchset-created
        ev.comment_added(1_700_000_403),
        ev.change_merged(1_700_000_404),
        {"type": "ref-replicated", "eventCreatedOn": 1_700_000_405},  # not handled
        ev.ref_updated(1_700_000_406, "refs/tags/v1", submitter=None),
        nameless,
        expect=6,
    )
    assert not _differences(theirs, ours), "\n".join(_differences(theirs, ours))
    assert [(c["category"], c["branch"], c["author"]) for c in ours] == [
        ("change-merged", "main", "Ann Author <ann@example.org>"),
        ("comment-added", "refs/changes/45/12345/2", "Ann Author <ann@example.org>"),
        ("patchset-created", "refs/changes/45/12345/2", "Ann Author <ann@example.org>"),
        ("ref-updated", "feature", "ci"),
        ("ref-updated", "main", "Bob Reviewer <bob@example.org>"),
        ("ref-updated", "refs/tags/v1", "gerrit"),
    ]
    # the files came from ``gerrit query`` on both
    assert ours[2]["files"] == ["/COMMIT_MSG", "src/frob.c"]
    assert ours[2]["properties"]["event.change.owner.email"] == ["ann@example.org", "Change"]


def test_a_repeated_event_is_one_change_here(twins: tuple[GerritSshd, Master, Master]) -> None:
    event = ev.patchset_created(1_700_000_500)
    theirs, ours = _send_both(
        twins, event, event, ev.ref_updated(1_700_000_501, "refs/heads/next"), expect=(3, 2)
    )
    # Buildbot makes a change of each copy it streams; buildyard drops a copy of an event it
    # already handled (same time, same content), as Buildbot itself does for the copies that
    # the events-log and the stream both give: one Gerrit event is one change.
    assert [c["category"] for c in theirs] == [
        "patchset-created",
        "patchset-created",
        "ref-updated",
    ]
    assert [c["category"] for c in ours] == ["patchset-created", "ref-updated"]
    assert not _differences(theirs[1:], ours)


def test_a_patch_set_the_query_does_not_list(twins: tuple[GerritSshd, Master, Master]) -> None:
    gerrit = twins[0]
    unknown = ev.patchset_created(1_700_000_600, number=7, revision=ev.REV2)
    theirs, ours = _send_both(
        twins, unknown, ev.ref_updated(1_700_000_601, "refs/heads/x"), expect=(1, 2)
    )
    # Buildbot's files lookup fails on it (a KeyError in its log) and the event makes no change;
    # buildyard logs that the files could not be had and records the change with the files
    # Buildbot gives when it does not ask ("unknown"): nothing Gerrit announced is lost.
    assert [(c["category"], c["branch"]) for c in theirs] == [("ref-updated", "x")]
    assert [(c["category"], c["branch"], c["files"]) for c in ours] == [
        ("patchset-created", "refs/changes/45/12345/7", ["unknown"]),
        ("ref-updated", "x", ["unknown"]),
    ]
    assert "gerrit query 12345 --format JSON --files --patch-sets" in gerrit.commands()


POLLER_CONFIG = """\
from buildbot.plugins import *

c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {worker_port}}}}}
c['builders'] = [
    util.BuilderConfig(name='b', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
]
c['schedulers'] = [schedulers.AnyBranchScheduler(name='all', builderNames=['b'])]
c['change_source'] = [changes.GerritEventLogPoller(
    BASE_URL, auth=('ci', 'pw'), pollInterval=3600, gitBaseURL='ssh://gerrit.example.org:29418',
    handled_events=['patchset-created', 'ref-updated', 'change-merged'], get_files=True)]
c['www'] = {{'port': 'tcp:{www_port}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotNetUsageData'] = None
"""


async def test_event_log_poller_side_by_side(tmp_path: Path) -> None:
    """Both masters' GerritEventLogPoller poll one server shaped like the events-log plugin
    (and the REST API's files endpoint) at start. Stock Buildbot 4.3.0's poller fails every
    poll before asking anything (its Poller calls ``do_poll`` with an argument it does not take:
    a TypeError in its log) and records no change; buildyard's records the handled events."""
    now = int(time.time())
    events = [
        ev.patchset_created(now - 300),
        ev.ref_updated(now - 200),
        ev.change_merged(now - 100),
        ev.comment_added(now - 50),  # not handled
    ]
    asked: list[tuple[str, str | None]] = []

    async def events_log(request: web.Request) -> web.Response:
        asked.append((request.path_qs, request.headers.get("Authorization")))
        return web.Response(text="".join(json.dumps(e) + "\n" for e in events))

    async def files(request: web.Request) -> web.Response:
        asked.append((request.path_qs, request.headers.get("Authorization")))
        return web.Response(text=")]}'\n" + json.dumps({"/COMMIT_MSG": {}, "src/frob.c": {}}))

    app = web.Application()
    app.router.add_get("/plugins/events-log/events/", events_log)
    app.router.add_get("/changes/{change}/revisions/{patchset}/files/", files)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    config = POLLER_CONFIG.replace("BASE_URL", repr(f"http://127.0.0.1:{port}"))
    masters: list[Master] = []
    try:
        for kind in ("buildbot", "buildyard"):
            masters.append(await asyncio.to_thread(_start, kind, tmp_path / kind, config))

        buildbot, buildyard = masters

        def done() -> bool:
            broken = "GerritHttpEventLogPollerConnector.do_poll() takes 1 positional argument"
            return len(buildyard.changes()) >= 3 and broken in buildbot.log.read_text()

        async def recorded() -> bool:
            return await asyncio.to_thread(done)

        await eventually(recorded, within=120, interval=0.5)
        theirs = await asyncio.to_thread(buildbot.changes)
        ours = sorted(await asyncio.to_thread(buildyard.changes), key=_order)
    finally:
        for master in masters:
            await asyncio.to_thread(end_popen, master.proc)
        await runner.cleanup()
    assert theirs == []
    assert [(c["category"], c["branch"]) for c in ours] == [
        ("change-merged", "main"),
        ("patchset-created", "refs/changes/45/12345/2"),
        ("ref-updated", "main"),
    ]
    assert ours[1]["files"] == ["/COMMIT_MSG", "src/frob.c"]
    assert ours[1]["repository"] == "ssh://gerrit.example.org:29418/octo/hello"
    assert ours[1]["properties"]["event.source"] == ["GerritEventLogPoller", "Change"]
    basic = "Basic " + base64.b64encode(b"ci:pw").decode()
    assert {auth for _, auth in asked} == {basic}
    polls = [path for path, _ in asked if path.startswith("/plugins/")]
    assert len(polls) == 1  # buildyard's, at start (pollAtLaunch); Buildbot's never came

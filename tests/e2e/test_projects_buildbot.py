"""Projects and codebases side by side with stock Buildbot 4.3.0: one master.cfg with
c['projects'], c['codebases'] and a GitPoller given the codebase, on a Buildbot master and a
buildyard master watching the same real git repository. After the same commits and the same
``poller`` hook calls, the REST API of both serves the same projects, codebases, commits
(parents included) and branches, and both databases hold the same users made from the
commits' authors."""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from buildyard.testing.processes import end_popen
from tests.e2e.test_change_hooks_buildbot import Master, _start
from tests.master.changes.conftest import Upstream

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("buildbot-projects")]

CONFIG = """\
from buildbot.plugins import *

c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {worker_port}}}}}
c['projects'] = [
    util.Project('lighthouse', slug='lh', description='Keeps ships off the rocks'),
    util.Project('harbour'),
]
lamp = util.Codebase('lamp', project='lighthouse')
c['codebases'] = [lamp, util.Codebase('quay', project='harbour', slug='the-quay')]
c['change_source'] = [changes.GitPoller(REPO, branches=['main', 'dev'], codebase=lamp,
                                        pollAtLaunch=True, name='lamp-poller')]
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], project='lighthouse',
                                    factory=util.BuildFactory())]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b'])]
c['www'] = {{'port': 'tcp:{www_port}:interface=127.0.0.1',
            'change_hook_dialects': {{'poller': True}}}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotNetUsageData'] = None
"""


def _wait(condition: Callable[[], bool], what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _rows(master: Master, query: str) -> list[tuple[Any, ...]]:
    path = Path(master.log).parent / "state.sqlite"
    with sqlite3.connect(path, timeout=30) as db:
        return [tuple(r) for r in db.execute(query)]


def _polled(master: Master) -> bool:
    rows = _rows(
        master,
        "SELECT s.value_json FROM object_state s JOIN objects o ON o.id = s.objectid "
        "WHERE o.name = 'lamp-poller' AND s.name = 'lastRev'",
    )
    return bool(rows) and bool(json.loads(rows[0][0]))


def _poll(master: Master) -> None:
    status, text = master.request("/change_hook/poller?poller=lamp-poller", b"", {})
    assert status == 200, f"{master.kind}: {status} {text}"


def _has_commits(master: Master, count: int) -> bool:
    return len(_commits(master)) == count


def _commits(master: Master) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = master.get("codebases/1/commits")["commits"]
    return sorted(found, key=lambda c: int(c["commitid"]))


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Upstream, Master, Master]]:
    root = tmp_path_factory.mktemp("projects-twins")
    upstream = Upstream(root / "upstream")
    upstream.commit("initial")
    upstream.git("branch", "dev")
    config = CONFIG.replace("REPO", repr(upstream.url))
    buildbot = _start("buildbot", root / "buildbot", config)
    try:
        buildyard = _start("buildyard", root / "buildyard", config)
        try:
            yield upstream, buildbot, buildyard
        finally:
            end_popen(buildyard.proc)
    finally:
        end_popen(buildbot.proc)


def test_the_same_projects_codebases_commits_branches_and_users(
    twins: tuple[Upstream, Master, Master],
) -> None:
    upstream, buildbot, buildyard = twins
    both = (buildbot, buildyard)
    for master in both:
        _wait(functools.partial(_polled, master), f"the {master.kind} master's first poll")

    # projects and codebases from the configuration
    for path in ("projects", "codebases", "projects/1", "codebases/2"):
        theirs, ours = (m.get(path) for m in both)
        assert ours == theirs, path
    projects = buildyard.get("projects")["projects"]
    # listed by name, as Buildbot lists them
    assert [(p["name"], p["slug"]) for p in projects] == [
        ("harbour", "harbour"),
        ("lighthouse", "lh"),
    ]
    theirs, ours = (m.get("builders")["builders"][0]["projectid"] for m in both)
    assert ours == theirs == 1

    # two commits on main, one on dev; then one more on main (linked to the last recorded)
    for step in range(2):
        if step == 0:
            upstream.commit("Brighter lamp")
            upstream.commit("Wider beam")
            upstream.checkout("dev")
            upstream.commit("Fog horn", author="Dee Dev <dee@example.org>")
            upstream.checkout("main")
            expected = 3
        else:
            upstream.commit("Storm shutters")
            expected = 4
        for master in both:
            _poll(master)
        for master in both:
            _wait(functools.partial(_has_commits, master, expected), f"{master.kind}'s commits")
        theirs, ours = (_commits(m) for m in both)
        assert ours == theirs
        # the branches point at the same commits; last_timestamp is each poll's own time
        theirs, ours = (
            [
                {k: v for k, v in b.items() if k != "last_timestamp"}
                for b in m.get("codebases/1/branches")["branches"]
            ]
            for m in both
        )
        assert sorted(ours, key=lambda b: b["name"]) == sorted(theirs, key=lambda b: b["name"])
    revision = upstream.head()
    path = f"codebases/1/commits_by_revision/{revision}"
    theirs, ours = (m.get(path) for m in both)
    assert ours == theirs and ours["commits"][0]["revision"] == revision

    # users from the changes' authors, linked to their changes
    users = "SELECT uid, identifier FROM users ORDER BY uid"
    infos = "SELECT uid, attr_type, attr_data FROM users_info ORDER BY uid, attr_type"
    links = "SELECT changeid, uid FROM change_users ORDER BY changeid"
    for query in (users, infos, links):
        theirs, ours = (_rows(m, query) for m in both)
        assert ours == theirs, query
    # dev's commit first: both poll the refs in the order ls-remote lists them
    assert [r[1] for r in _rows(buildyard, users)] == [
        "Dee Dev <dee@example.org>",
        "Ann Author <ann@example.org>",
    ]

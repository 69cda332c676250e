"""Projects, codebases and their history on a running master: c['projects'] and c['codebases']
served by the REST API, a GitPoller given the codebase recording the commits of a real git
repository (woken by the ``poller`` change hook) and moving its branch, a build of the change on
a real worker, and users made from the authors of the poller's and a GitHub hook's changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from buildyard.master.model.results import Results
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import eventually
from tests.master.changes.conftest import AUTHOR, Upstream
from tests.master.changes.hooks import payloads as p

pytestmark = pytest.mark.e2e

BODY = """
c['projects'] = [util.Project('lighthouse', slug='lh', description='Keeps ships off the rocks')]
lamp = util.Codebase('lamp', project='lighthouse')
c['codebases'] = [lamp]
c['change_source'] = [changes.GitPoller({repo!r}, branches=['main'], codebase=lamp,
                                        pollAtLaunch=True, name='lamp-poller',
                                        workdir={workdir!r})]
c['builders'] = [util.BuilderConfig(name="lamp", workernames=["w1"], project='lighthouse',
    factory=util.BuildFactory([steps.ShellCommand(name="show", command=["echo",
        util.Interpolate("%(src::revision)s")])]))]
c['schedulers'] = [schedulers.SingleBranchScheduler(name="on-main", builderNames=["lamp"],
    change_filter=util.ChangeFilter(repository={repo!r}, branch='main'), treeStableTimer=None)]
c['www'] = {{
    'port': 'tcp:{port}:interface=127.0.0.1',
    'change_hook_dialects': {{'poller': {{'allowed': ['lamp-poller']}}, 'github': {{}}}},
}}
"""


async def _get(http: aiohttp.ClientSession, port: int, path: str) -> Any:
    async with http.get(f"http://127.0.0.1:{port}/api/v2/{path}") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json(content_type=None)


async def test_a_polled_repository_fills_its_codebase(tmp_path: Path) -> None:
    upstream = Upstream(tmp_path / "upstream")
    upstream.commit("initial")
    port = free_port()
    body = BODY.format(repo=upstream.url, port=port, workdir=str(tmp_path / "gitpoller-work"))
    async with running_master(tmp_path, body) as running, aiohttp.ClientSession() as http:
        db = running.master.db

        async def polled_once() -> bool:
            objectid = await db.state.get_object_id("lamp-poller", "GitPoller")
            return await db.state.get_state(objectid, "lastRev", None) is not None

        await eventually(polled_once, within=60)
        (project,) = (await _get(http, port, "projects"))["projects"]
        assert (project["name"], project["slug"], project["description"]) == (
            "lighthouse",
            "lh",
            "Keeps ships off the rocks",
        )
        (builder,) = (await _get(http, port, "builders"))["builders"]
        assert builder["projectid"] == project["projectid"]
        (codebase,) = (await _get(http, port, "codebases"))["codebases"]
        assert (codebase["name"], codebase["slug"], codebase["projectid"]) == (
            "lamp",
            "lamp",
            project["projectid"],
        )
        cbid = codebase["codebaseid"]
        # the history before the first poll is not news: no commit yet
        assert (await _get(http, port, f"codebases/{cbid}/commits"))["commits"] == []

        revisions = [upstream.commit("Brighter lamp"), upstream.commit("Wider beam")]
        async with http.post(
            f"http://127.0.0.1:{port}/change_hook/poller?poller=lamp-poller"
        ) as resp:
            assert resp.status == 200, await resp.text()

        async def built() -> bool:
            builds = await db.builds.get_builds()
            return bool(builds) and all(b.complete_at is not None for b in builds)

        await eventually(built, within=120)
        commits = (await _get(http, port, f"codebases/{cbid}/commits"))["commits"]
        assert [c["revision"] for c in commits] == revisions
        assert [c["parent_commitid"] for c in commits] == [None, commits[0]["commitid"]]
        assert {c["author"] for c in commits} == {AUTHOR}
        assert [c["comments"] for c in commits] == ["Brighter lamp", "Wider beam"]
        (branch,) = (await _get(http, port, f"codebases/{cbid}/branches"))["branches"]
        assert (branch["name"], branch["commitid"]) == ("main", commits[-1]["commitid"])
        by_revision = await _get(http, port, f"codebases/{cbid}/commits_by_revision/{revisions[0]}")
        assert by_revision["commits"] == [commits[0]]

        # the changes were built (one build: the scheduler takes the branch's latest)
        builds = await db.builds.get_builds()
        results = [await running.result(b.id) for b in builds]
        assert {r.build.results for r in results} == {Results.SUCCESS}
        assert results[-1].stdout("show") == f"{revisions[-1]}\n"

        # a GitHub push: its author becomes a user too (src "git"); it feeds no codebase
        payload = p.body(p.gh_push("refs/heads/main", [p.gh_commit(5, "Fog lamp")]))
        async with http.post(
            f"http://127.0.0.1:{port}/change_hook/github",
            data=payload,
            headers={"X-GitHub-Event": "push", "Content-Type": "application/json"},
        ) as resp:
            assert (resp.status, await resp.text()) == (200, "1 change found")
        changes = await db.changes.get_changes()
        hooked = changes[-1]
        users = {u.identifier: u for u in await db.users.get_users()}
        assert set(users) == {AUTHOR, hooked.author}
        assert dict(users[AUTHOR].attributes) == {"git": AUTHOR}
        assert dict(users[hooked.author].attributes) == {"git": hooked.author}
        assert len((await _get(http, port, f"codebases/{cbid}/commits"))["commits"]) == 2

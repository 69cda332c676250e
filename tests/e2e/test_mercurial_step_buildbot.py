"""steps.Mercurial side by side with stock Buildbot 4.3.0: the same master.cfg on each (a
stock worker on Buildbot's, buildyard's worker on ours), the same forced builds against one hg
repository; each build's result, ``got_revision`` and checked-out files are compared."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.test_reporters_buildbot import _master
from tests.master.changes.test_hgpoller import HgUpstream

pytestmark = pytest.mark.e2e

CONFIG = """\
import os
from buildbot.plugins import *

c = BuildmasterConfig = {}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {'msgpack_experimental_v7': {
    'port': int(os.environ['T_WORKER_PORT']), 'interface': '127.0.0.1'}}
REPO = os.environ['T_HG_REPO']
c['builders'] = [
    util.BuilderConfig(name='inrepo', workernames=['w1'], factory=util.BuildFactory([
        steps.Mercurial(repourl=REPO, branchType='inrepo')])),
    util.BuilderConfig(name='fresh', workernames=['w1'], factory=util.BuildFactory([
        steps.Mercurial(repourl=REPO, branchType='inrepo', mode='full', method='fresh')])),
]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['inrepo', 'fresh'])]
c['www'] = {'port': 'tcp:%s:interface=127.0.0.1' % os.environ['T_WWW_PORT']}
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
c['buildbotNetUsageData'] = None
"""


async def _call(http: aiohttp.ClientSession, url: str, body: Any = None) -> Any:
    if body is None:
        async with http.get(url) as resp:
            return await resp.json(content_type=None)
    async with http.post(url, json=body) as resp:
        return await resp.json(content_type=None)


async def _build(api: str, builder: str, branch: str, revision: str) -> dict[str, Any]:
    """Force one build of ``builder`` and wait for its end; its result and got_revision."""
    async with aiohttp.ClientSession() as http:
        builderid = (await _call(http, f"{api}/builders/{builder}"))["builders"][0]["builderid"]
        before = await _call(http, f"{api}/builders/{builderid}/builds")
        count = len(before["builds"])
        body = {
            "jsonrpc": "2.0",
            "method": "force",
            "id": 1,
            "params": {
                "builderNames": [builder],
                "reason": "side by side",
                "branch": branch,
                "revision": revision,
                "repository": "",
                "project": "",
            },
        }
        reply = await _call(http, f"{api}/forceschedulers/force", body)
        assert "result" in reply, reply
        async with asyncio.timeout(240):
            while True:
                builds = (await _call(http, f"{api}/builders/{builderid}/builds"))["builds"]
                if len(builds) > count and builds[-1]["complete"]:
                    break
                await asyncio.sleep(0.3)
        build = builds[-1]
        props = await _call(http, f"{api}/builds/{build['buildid']}/properties")
    got = props["properties"][0].get("got_revision", [None])[0]
    return {"results": build["results"], "got_revision": got}


def _files(checkout: Path) -> set[str]:
    return {
        str(p.relative_to(checkout))
        for p in checkout.rglob("*")
        if p.is_file() and ".hg" not in p.relative_to(checkout).parts
    }


async def test_the_same_checkouts_as_buildbot(tmp_path: Path) -> None:
    repo = HgUpstream(tmp_path / "upstream")
    first = repo.commit("first", {"a.txt": "one\n", ".hgignore": "syntax: glob\n*.o\n"})
    repo.hg("branch", "-q", "stable")
    on_stable = repo.commit("on stable", {"stable.txt": "s\n"})
    repo.hg("update", "-q", "default")
    second = repo.commit("second", {"a.txt": "two\n"})
    builds = [
        ("inrepo", "", "", second),
        ("inrepo", "", first, first),
        ("inrepo", "stable", "", on_stable),
        ("fresh", "", "", second),
        ("fresh", "stable", "", on_stable),
    ]
    found: dict[str, list[Any]] = {}
    for kind in ("buildbot", "buildyard"):
        root = tmp_path / kind
        async with _master(kind, tmp_path, {"T_HG_REPO": repo.url}, CONFIG) as api:
            found[kind] = []
            for builder, branch, revision, expected in builds:
                result = await _build(api, builder, branch, revision)
                checkout = root / "worker" / builder / "build"
                found[kind].append((result, _files(checkout)))
                assert result == {"results": 0, "got_revision": expected}, (kind, builder)
                # untracked and ignored files for the next build (fresh: purge --all)
                (checkout / "junk.txt").write_text("x\n")
                (checkout / "obj.o").write_text("x\n")
    assert found["buildbot"] == found["buildyard"]
    files = [f for _, f in found["buildyard"]]
    assert files[0] == {".hgignore", "a.txt"}
    # incremental: untracked files stay (also across the branch change, which clobbers the
    # tree on both: the files are gone there)
    assert {"junk.txt", "obj.o"} <= files[1]
    assert files[2] == {".hgignore", "a.txt", "stable.txt"}
    assert files[4] == {".hgignore", "a.txt", "stable.txt"}

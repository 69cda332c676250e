"""The Visual Studio and MSBuild steps side by side with the stock Buildbot 4.3.0: the same
master.cfg (the steps of vstudio_standin.factory, with ainakan-ci's
``from buildbot.steps.vstudio import VS2017 as VS2022``) forced once on each master, each with
its own stock-kind worker (buildyard-worker, buildbot-worker) and the same stand-ins for
devenv.com, msdev, msbuild and vcvarsall.bat. The command lines and environments the stand-ins
got are compared, and the steps' results; where the summaries differ, on purpose, the
assertions say why."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from buildyard.testing.processes import eventually
from tests.e2e.test_reporters_buildbot import _force, _master
from tests.master.steps import vstudio_standin as standin

pytestmark = pytest.mark.e2e

CONFIG = """\
import os
from buildbot.plugins import *

c = BuildmasterConfig = {}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {'msgpack_experimental_v7': {
    'port': int(os.environ['T_WORKER_PORT']), 'interface': '127.0.0.1'}}
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['vs'])]
c['www'] = {'port': 'tcp:%s:interface=127.0.0.1' % os.environ['T_WWW_PORT']}
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
c['buildbotNetUsageData'] = None
"""
BUILDER = "c['builders'] = [util.BuilderConfig(name='vs', workernames=['w1'], factory=f)]\n"


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, (url, resp.status)
        return await resp.json(content_type=None)


async def _build(kind: str, root: Path, script: Path) -> dict[str, dict[str, Any]]:
    """Each step of the one forced build on a master of ``kind``: its row and its logs' text."""
    config = CONFIG + standin.factory(script) + BUILDER
    async with _master(kind, root, {}, config) as api, aiohttp.ClientSession() as http:
        await _force(api)

        async def finished() -> bool:
            builds = (await _get(http, f"{api}/builds"))["builds"]
            return bool(builds) and builds[0]["complete"]

        await eventually(finished, within=240, interval=0.3)
        steps: dict[str, dict[str, Any]] = {}
        for step in (await _get(http, f"{api}/builds/1/steps"))["steps"]:
            logs: dict[str, str] = {}
            for log in (await _get(http, f"{api}/steps/{step['stepid']}/logs"))["logs"]:
                chunks = await _get(http, f"{api}/logs/{log['logid']}/contents")
                logs[log["name"]] = "".join(c["content"] for c in chunks["logchunks"])
            steps[step["name"]] = {**step, "logs": logs}
        return steps


def _records(step: dict[str, Any]) -> list[dict[str, Any]]:
    seen = standin.records(step["logs"]["stdio"])
    for record in seen:
        record["env"]["PATH"] = standin.without_worker_path(
            record["env"]["PATH"], os.environ["PATH"]
        )
    return seen


_COUNTS = re.compile(r"^compile (\d+) projects (\d+) files(?: (\d+) warnings)?(?: (\d+) errors)?")


def _counts(state: str) -> tuple[int, ...]:
    found = _COUNTS.match(state)
    assert found, state
    return tuple(int(n or 0) for n in found.groups())


async def test_the_steps_run_what_buildbots_run(tmp_path: Path) -> None:
    script = standin.write_standin(tmp_path / "standin")
    ours, theirs = await asyncio.gather(
        _build("buildyard", tmp_path, script), _build("buildbot", tmp_path, script)
    )
    names = ["stand-ins", "vs2017", "vc6", "vc8", "msbuild4", "msbuild17"]
    theirs.pop("worker_preparation")  # Buildbot's step for the worker's setup
    assert list(ours) == list(theirs) == names

    # the same programs, arguments and environments, which are the ones expected
    for step in standin.EXPECTED:
        assert _records(ours[step]) == _records(theirs[step]) == standin.EXPECTED[step], step
    for steps in (ours, theirs):
        assert standin.MSBUILD17 in steps["msbuild17"]["logs"]["stdio"]

    # the same results
    assert {n: s["results"] for n, s in ours.items()} == {
        n: s["results"] for n, s in theirs.items()
    }
    assert [ours[n]["results"] for n in names] == [0, 2, 1, 0, 0, 2]
    for steps in (ours, theirs):
        assert {"warnings", "errors"} <= set(steps["vs2017"]["logs"])
    assert ours["msbuild4"]["state_string"] == theirs["msbuild4"]["state_string"]
    assert ours["msbuild4"]["state_string"] == "built app for Release|Win32"

    # The counts differ on purpose. Buildbot 4.3.0's observer splits the text it is given at
    # "\r\n", but its logs have already turned MSVC's "\r\n" into "\n": each chunk the worker
    # sent counts as one line, so at most one project, file, warning or error is counted per
    # chunk (here the output comes in one chunk). buildyard counts every line.
    assert ours["vs2017"]["state_string"] == (
        "compile Release|Win32 2 projects 3 files 2 warnings 1 errors (failure)"
    )
    assert _counts(ours["vs2017"]["state_string"].replace("Release|Win32 ", "")) == (2, 3, 2, 1)
    for step in ("vs2017", "vc6", "vc8"):
        mine = _counts(ours[step]["state_string"].replace("Release|Win32 ", ""))
        stock = _counts(theirs[step]["state_string"])
        assert all(s <= m for s, m in zip(stock, mine, strict=True)), (step, mine, stock)
        assert sum(stock) <= 1, (step, stock)
    # for the same reason its warnings log gets the whole chunk, where ours has the lines
    assert "o1>adler32.c\n" in theirs["vs2017"]["logs"]["warnings"]
    assert "o1>adler32.c\n" not in ours["vs2017"]["logs"]["warnings"]
    # and Buildbot 4.3.0 writes "compile" where the step's descriptionDone is
    assert theirs["vs2017"]["state_string"].startswith("compile ")
    assert theirs["vs2017"]["state_string"].endswith(" (failure)")

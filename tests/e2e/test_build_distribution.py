"""How a master process spreads forced builds over its workers: a worker runs the builds of
one builder one after another (max_builds unset), and every idle worker gets work."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from buildyard.master.model.results import Results
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, end_popen, eventually, spawn_master
from buildyard.testing.workers import start_worker

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {}
c['workers'] = [worker.Worker("w1", "pw"), worker.Worker("w2", "pw")]
c['protocols'] = {'msgpack_experimental_v7': {'port': PORT, 'interface': '127.0.0.1'}}
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
c['www'] = {'port': 'tcp:WWW:interface=127.0.0.1'}
c['collapseRequests'] = False
# each build notes when it starts and ends; "pair" builds wait (bounded) until two have started
record = util.Interpolate("echo start %(prop:buildnumber)s >> TRACE; sleep 1; "
                          "echo end %(prop:buildnumber)s >> TRACE")
meet = util.Interpolate("touch MEET/%(prop:buildnumber)s; i=0; "
                        "while [ $(ls MEET | wc -l) -lt 2 ] && [ $i -lt 1200 ]; do "
                        "sleep 0.1; i=$((i+1)); done; [ $(ls MEET | wc -l) -ge 2 ]")
c['builders'] = [
    util.BuilderConfig(name="one", workernames=["w1"],
                       factory=util.BuildFactory([steps.ShellCommand(command=record)])),
    util.BuilderConfig(name="pair", workernames=["w1", "w2"],
                       factory=util.BuildFactory([steps.ShellCommand(command=meet)])),
]
c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=["one", "pair"])]
"""


class Api:
    def __init__(self, http: aiohttp.ClientSession, www: int) -> None:
        self.http = http
        self.base = f"http://127.0.0.1:{www}/api/v2"

    async def get(self, path: str) -> Any:
        async with self.http.get(f"{self.base}/{path}") as resp:
            assert resp.status == 200, await resp.text()
            return json.loads(await resp.text())

    async def force(self, builderid: int) -> None:
        body = {"jsonrpc": "2.0", "method": "force", "id": 1, "params": {"builderid": builderid}}
        async with self.http.post(f"{self.base}/forceschedulers/force", json=body) as resp:
            reply = json.loads(await resp.text())
            assert resp.status == 200 and "result" in reply, reply

    async def finished_builds(self, builderid: int, count: int) -> list[dict[str, Any]]:
        async def done() -> bool:
            builds = (await self.get(f"builders/{builderid}/builds"))["builds"]
            return len(builds) == count and all(b["complete"] for b in builds)

        await eventually(done, within=120, interval=0.2)
        builds = (await self.get(f"builders/{builderid}/builds"))["builds"]
        return sorted(builds, key=lambda b: b["number"])


async def test_forced_builds_of_one_builder_run_one_after_another_and_spread(
    tmp_path: Path,
) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    trace, meet = tmp_path / "trace", tmp_path / "meet"
    meet.mkdir()
    port, www = free_port(), free_port()
    config = CONFIG.replace("PORT", str(port)).replace("WWW", str(www))
    (basedir / "master.cfg").write_text(
        config.replace("TRACE", str(trace)).replace("MEET", str(meet))
    )
    assert buildyard("upgrade-master", str(basedir)).returncode == 0
    procs: list[subprocess.Popen[bytes]] = [spawn_master(basedir)]
    try:
        for name in ("w1", "w2"):
            procs.append(
                await asyncio.to_thread(
                    start_worker, "buildyard", tmp_path / name, port, name, "pw"
                )
            )
        async with aiohttp.ClientSession() as http:
            api = Api(http, www)

            async def both_connected() -> bool:
                try:
                    workers = (await api.get("workers"))["workers"]
                except aiohttp.ClientError:
                    return False
                return all(w["connected_to"] for w in workers) and len(workers) == 2

            await eventually(both_connected, within=60, interval=0.2)
            ids = {b["name"]: b["builderid"] for b in (await api.get("builders"))["builders"]}
            for _ in range(3):
                await api.force(ids["one"])
            for _ in range(2):
                await api.force(ids["pair"])

            ones = await api.finished_builds(ids["one"], 3)
            pairs = await api.finished_builds(ids["pair"], 2)
            workers = {w["workerid"]: w["name"] for w in (await api.get("workers"))["workers"]}

        # one worker, three builds of one builder: each starts once the one before it ended
        assert [b["results"] for b in ones] == [Results.SUCCESS] * 3
        assert {workers[b["workerid"]] for b in ones} == {"w1"}
        events = trace.read_text().split()
        assert list(zip(events[::2], events[1::2], strict=True)) == [
            ("start", "1"),
            ("end", "1"),
            ("start", "2"),
            ("end", "2"),
            ("start", "3"),
            ("end", "3"),
        ]
        for before, after in itertools.pairwise(ones):
            assert after["started_at"] >= before["complete_at"]
        # two builds of "pair" ran at the same time (each waited for the other), on both workers
        assert [b["results"] for b in pairs] == [Results.SUCCESS] * 2
        assert sorted(workers[b["workerid"]] for b in pairs) == ["w1", "w2"]
    finally:
        for proc in reversed(procs):
            end_popen(proc)

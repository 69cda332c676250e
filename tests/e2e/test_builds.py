"""Builds end to end in one master: requests -> distributor -> build -> steps on a real worker
-> results, steps and logs in the database."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.db import schema as t
from buildyard.master.master import BuildMaster
from buildyard.master.model.results import Results
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually
from buildyard.testing.workers import start_worker

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw", max_builds={max_builds}, properties={{"wprop": "w"}},
                             defaultProperties={{"greeting": "ignored", "wdefault": "d"}})]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['properties'] = {{'greeting': 'hello'}}
f = util.BuildFactory()
f.addStep(steps.ShellCommand(name="say", command=["sh", "-c", "echo $GREETING; echo oops >&2"],
                             env={{"GREETING": "hi there"}}))
f.addStep(steps.ShellCommand(command="exit 3", haltOnFailure=True))
f.addStep(steps.ShellCommand(name="never", command="echo never"))
f.addStep(steps.ShellCommand(name="cleanup", command="echo cleaning", alwaysRun=True))
ok = util.BuildFactory([steps.ShellCommand(command="pwd")])
loud = util.BuildFactory([steps.ShellCommand(name="loud", command="seq 1 5000")])
c['builders'] = [
    util.BuilderConfig(name="b", workernames=["w1"], factory=f),
    util.BuilderConfig(name="ok", workernames=["w1"], factory=ok),
    util.BuilderConfig(name="loud", workernames=["w1"], factory=loud),
]
c['logCompressionMethod'] = 'zstd'

"""


@pytest.fixture
async def master(tmp_path: Path) -> AsyncIterator[tuple[BuildMaster, Path]]:
    basedir = tmp_path / "master"
    basedir.mkdir()
    port = free_port()
    (basedir / "master.cfg").write_text(CONFIG.format(port=port, max_builds=1))
    m = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(m.db)
    await m.start()
    workdir = tmp_path / "worker"
    proc: subprocess.Popen[bytes] = await asyncio.to_thread(
        start_worker, "buildyard", workdir, port, "w1", "pw"
    )
    try:
        await eventually(lambda: "w1" in m.workers.listener.connections, within=60)
        yield m, workdir
    finally:
        end_popen(proc)
        await m.stop()


async def _request(m: BuildMaster, builder: str) -> tuple[int, int]:
    builderid = await m.data.updates.find_builder_id(builder)
    bsid, brids = await m.data.updates.add_buildset(
        scheduler="test",
        sourcestamps=[
            {"branch": "main", "revision": "abc", "repository": "r", "project": "", "codebase": ""}
        ],
        reason="because",
        properties={"from_scheduler": (1, "Scheduler")},
        builderids=[builderid],
    )
    return bsid, brids[builderid]


async def _finished(m: BuildMaster, bsid: int) -> None:
    async def done() -> bool:
        bs = await m.db.buildsets.get_buildset(bsid)
        return bs is not None and bs.complete

    await eventually(done, within=60)


async def test_a_build_runs_its_steps_and_stores_results_and_logs(
    master: tuple[BuildMaster, Path],
) -> None:
    m, workdir = master
    bsid, brid = await _request(m, "b")
    await _finished(m, bsid)

    [build] = await m.db.builds.get_builds(buildrequestid=brid)
    assert build.results == Results.FAILURE
    assert build.complete_at is not None
    # the result, then what the failing step said (as Buildbot composes it)
    assert build.state_string == "failed 'exit 3' (failure)"
    steps = await m.db.steps.get_steps(build.id)
    # "never" is skipped after haltOnFailure (no row); "cleanup" is alwaysRun
    assert [(s.name, s.results) for s in steps] == [
        ("say", Results.SUCCESS),
        ("shell", Results.FAILURE),
        ("cleanup", Results.SUCCESS),
    ]
    [stdio] = await m.db.logs.get_logs(steps[0].id)
    assert stdio.name == "stdio"
    assert stdio.complete
    text = await m.db.logs.get_log_lines(stdio.id, 0, stdio.num_lines - 1)
    lines = text.splitlines()
    assert "ohi there" in lines
    assert "eoops" in lines
    assert lines[0].startswith("hsh -c")  # the worker's header
    assert lines[-1] == "hprogram finished with exit code 0"
    assert steps[1].state_string == "'exit 3' (failure)"
    # the command ran in the builder's directory on the worker
    assert (workdir / "b" / "build").is_dir()

    props = await m.db.builds.get_build_properties(build.id)
    assert props["greeting"] == ("hello", "Global Configuration")  # a default does not win
    assert props["wprop"] == ("w", "Worker")
    assert props["wdefault"] == ("d", "Worker")
    assert props["from_scheduler"] == (1, "Scheduler")
    assert props["buildername"] == ("b", "Builder")
    assert props["buildnumber"] == (build.number, "Build")
    assert props["workername"] == ("w1", "Worker")
    assert props["branch"] == ("main", "Build")
    assert props["revision"] == ("abc", "Build")

    [request] = await m.db.buildrequests.get_buildrequests(bsid=bsid)
    assert request.complete
    assert request.results == Results.FAILURE
    bs = await m.db.buildsets.get_buildset(bsid)
    assert bs is not None
    assert bs.results == Results.FAILURE


async def test_identical_requests_collapse_and_max_builds_serialises(
    master: tuple[BuildMaster, Path],
) -> None:
    m, _ = master
    bsids = [(await _request(m, "ok"))[0] for _ in range(3)]
    for bsid in bsids:
        await _finished(m, bsid)
    builds = sorted(await m.db.builds.get_builds(), key=lambda b: b.id)
    # the first request may start alone; the ones waiting for the worker run as one build
    assert 1 <= len(builds) < 3
    assert all(b.results == Results.SUCCESS for b in builds)
    # max_builds=1: a build starts only once the one before it ended
    for before, after in itertools.pairwise(builds):
        assert before.complete_at is not None
        assert after.started_at >= before.complete_at
    requests = [r for bsid in bsids for r in await m.db.buildrequests.get_buildrequests(bsid=bsid)]
    assert len(requests) == 3
    assert all(r.complete and r.results == Results.SUCCESS for r in requests)
    for bsid in bsids:
        bs = await m.db.buildsets.get_buildset(bsid)
        assert bs is not None
        assert bs.results == Results.SUCCESS


async def test_a_finished_log_is_stored_compressed_with_the_configured_method(
    master: tuple[BuildMaster, Path],
) -> None:
    m, _ = master
    bsid, brid = await _request(m, "loud")
    await _finished(m, bsid)
    [build] = await m.db.builds.get_builds(buildrequestid=brid)
    [step] = await m.db.steps.get_steps(build.id)
    [stdio] = await m.db.logs.get_logs(step.id)
    async with m.db.reading() as conn:
        rows = await conn.execute(
            sa.select(t.logchunks.c.compressed).where(t.logchunks.c.logid == stdio.id)
        )
        codes = set(rows.scalars())
    assert codes == {4}  # zstd
    text = await m.db.logs.get_log_lines(stdio.id, 0, stdio.num_lines - 1)
    assert [line[1:] for line in text.splitlines() if line.startswith("o")] == [
        str(i) for i in range(1, 5001)
    ]

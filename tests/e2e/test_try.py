"""The stock ``buildbot try`` 4.3.0 against our master: ``--connect=pb --wait`` to
``schedulers.Try_Userpass`` served on the worker PB port, and ``--connect=ssh`` (its ``--ssh``
a script that runs the stock ``buildbot tryserver`` here instead of over ssh) to
``schedulers.Try_Jobdir``. The patch is built on a stock PB worker by the Git step."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.master.model.results import Results
from buildyard.master.schedulers.trysched import TryJobdirService
from buildyard.protocol.errors import RemoteError
from buildyard.protocol.portal import PbClient
from buildyard.testing.masters import BuildResult, Running
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually
from buildyard.testing.stock import buildbot_venv
from buildyard.testing.workers import STOCK_PB, start_worker
from tests.master.steps.test_git import make_repo

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
PB = 'tcp:{pb}:interface=127.0.0.1'
c['protocols'] = {{'pb': {{'port': PB}}}}
c['schedulers'] = [
    schedulers.Try_Userpass(
        name="try", builderNames=["b"], port=PB, userpass=[("alice", "wonderland")]),
    schedulers.Try_Jobdir(name="jobdir", builderNames=["b"], jobdir="jobs"),
]
c['builders'] = [
    util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
        steps.Git(repourl={repo!r}),
        steps.ShellCommand(name="show", command=["cat", "a.txt"]),
        steps.ShellCommand(name="props", command=["echo", util.Interpolate(
            "color=%(prop:color)s")]),
    ])),
    util.BuilderConfig(name="other", workernames=["w1"], factory=util.BuildFactory()),
]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""

DIFF = "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-two\n+patched by try\n"


@pytest.fixture
async def master(tmp_path: Path) -> AsyncIterator[tuple[BuildMaster, str]]:
    repo = tmp_path / "repo"
    base = make_repo(repo, {"a.txt": "two\n"})
    basedir = tmp_path / "master"
    basedir.mkdir()
    (basedir / "master.cfg").write_text(CONFIG.format(pb=free_port(), repo=str(repo)))
    m = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(m.db)
    await m.start()
    try:
        async with m.mq.subscribe(("workers", None, "connected")) as connected:
            port = m.workers.listener.pb_port
            assert port is not None
            proc = await asyncio.to_thread(
                start_worker, STOCK_PB, tmp_path / "worker", port, "w1", "pw"
            )
            try:
                async with asyncio.timeout(120):  # bounds a worker that never connects
                    await connected.get()
                yield m, base
            finally:
                end_popen(proc)
    finally:
        await m.stop()


def _try_ssh(cwd: Path, jobdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    fake_ssh = cwd / "fake-ssh"
    # ssh's arguments: -l USER, then the host, then the command to run there
    fake_ssh.write_text('#!/bin/sh\nwhile [ "$1" = -l ]; do shift 2; done\nshift\nexec "$@"\n')
    fake_ssh.chmod(0o755)
    stock = str(buildbot_venv() / "bin" / "buildbot")
    return subprocess.run(
        [
            stock,
            "try",
            "--connect=ssh",
            f"--ssh={fake_ssh}",
            "--host=localhost",
            "--username=ada",
            f"--jobdir={jobdir}",
            f"--buildbotbin={stock}",
            *args,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


async def _one_build(m: BuildMaster, tmp_path: Path) -> BuildResult:
    db = m.db

    async def built() -> bool:
        builds = await db.builds.get_builds()
        return bool(builds) and all(b.complete_at is not None for b in builds)

    await eventually(built, within=120)
    [build] = await db.builds.get_builds()
    running = Running(master=m, worker_dir=tmp_path / "worker", basedir=tmp_path)
    return await running.result(build.id)


async def test_a_job_left_in_the_jobdir_is_built(
    master: tuple[BuildMaster, str], tmp_path: Path
) -> None:
    m, base = master
    (tmp_path / "fix.diff").write_text(DIFF)
    jobdir = m.basedir / "jobs"
    done = await asyncio.to_thread(
        _try_ssh,
        tmp_path,
        jobdir,
        f"--diff={tmp_path / 'fix.diff'}",
        "--patchlevel=1",
        f"--baserev={base}",
        "--branch=main",
        f"--repository={tmp_path / 'repo'}",
        "--builder=b",
        "--who=ada",
        "--comment=fog lamp",
        "--property=color=green",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = await _one_build(m, tmp_path)
    assert result.build.results == Results.SUCCESS
    assert result.stdout("show") == "patched by try\n"
    assert result.stdout("props") == "color=green\n"
    [buildset] = await m.db.buildsets.get_buildsets()
    assert buildset.reason == "'try' job by user ada"
    assert buildset.external_idstring
    # handled: moved from new/ to cur/
    assert list((jobdir / "new").iterdir()) == []
    assert len(list((jobdir / "cur").iterdir())) == 1


async def test_a_bad_job_file_is_logged_and_set_aside(master: tuple[BuildMaster, str]) -> None:
    m, _ = master
    jobdir = m.basedir / "jobs"
    with structlog.testing.capture_logs() as logs:
        (jobdir / "tmp" / "bad").write_bytes(b"1:7,10:{not json},")
        (jobdir / "tmp" / "bad").replace(jobdir / "new" / "bad")
        await eventually((jobdir / "cur" / "bad").exists, within=60)
    [bad] = [e for e in logs if e["event"] == "try_bad_jobfile"]
    assert bad["reason"] == "unknown version '7'"
    assert await m.db.buildsets.get_buildsets() == []


def _try(cwd: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(buildbot_venv() / "bin" / "buildbot"),
            "try",
            "--connect=pb",
            f"--master=127.0.0.1:{port}",
            "--username=alice",
            *args,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


async def test_a_try_patch_is_built_on_the_worker(
    master: tuple[BuildMaster, str], tmp_path: Path
) -> None:
    m, base = master
    port = m.workers.listener.pb_port
    assert port is not None
    (tmp_path / "fix.diff").write_text(DIFF)

    names = await asyncio.to_thread(
        _try, tmp_path, port, "--passwd=wonderland", "--get-builder-names"
    )
    assert names.returncode == 0, names.stdout + names.stderr
    assert "b" in names.stdout.split()
    assert "other" not in names.stdout.split()

    done = await asyncio.to_thread(
        _try,
        tmp_path,
        port,
        "--passwd=wonderland",
        f"--diff={tmp_path / 'fix.diff'}",
        "--patchlevel=1",
        f"--baserev={base}",
        "--branch=main",
        f"--repository={tmp_path / 'repo'}",
        "--builder=b",
        "--who=ada",
        "--comment=fog lamp",
        "--property=color=blue",
        "--wait",
        "--quiet",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # --wait: the client followed the request to its build and got its result and text
    assert "All Builds Complete" in done.stdout
    assert "b: success (build successful)" in done.stdout
    result = await _one_build(m, tmp_path)
    assert result.build.results == Results.SUCCESS
    assert result.stdout("show") == "patched by try\n"
    assert result.stdout("props") == "color=blue\n"
    assert result.properties["color"] == ("blue", "try build")
    [buildset] = await m.db.buildsets.get_buildsets()
    assert buildset.reason == "'try' job by user ada (fog lamp)"


async def test_a_wrong_try_password_is_refused(master: tuple[BuildMaster, str]) -> None:
    # (the stock try client logs a refused login as an unhandled error and never exits: the
    # refusal is checked with our client, which logs in as Twisted's does)
    m, base = master
    port = m.workers.listener.pb_port
    assert port is not None
    refused = "UnauthorizedLogin: unknown user or wrong password"
    with structlog.testing.capture_logs() as logs, pytest.raises(RemoteError, match=refused):
        await PbClient.login("127.0.0.1", port, "alice", "nope")
    assert ("alice", "wrong password") in {
        (e.get("user"), e.get("reason")) for e in logs if e["event"] == "pb_login_refused"
    }
    # the right password reaches the try perspective: builders, and a job for a builder the
    # scheduler does not have is answered with None (Buildbot's answer), nothing added
    client = await PbClient.login("127.0.0.1", port, "alice", "wonderland")
    try:
        assert await client.perspective.call("getAvailableBuilderNames") == ["b"]
        answer = await client.perspective.call(
            "try", "main", base, (1, DIFF.encode()), "", "", ["other"], "ada", "", {}
        )
        assert answer is None
    finally:
        await client.close()
    assert await m.db.buildsets.get_buildsets() == []


def _job(jobid: str, properties: str) -> bytes:
    body = (
        f'{{"jobid": "{jobid}", "branch": "main", "baserev": null, "patch_level": 1,'
        f' "patch_body": "", "repository": "", "project": "", "who": "ada", "comment": "",'
        f' "builderNames": ["b"], "properties": {properties}}}'
    ).encode()
    return b"1:5," + str(len(body)).encode() + b":" + body + b","


async def test_a_job_that_cannot_be_added_is_logged_set_aside_and_the_watch_goes_on(
    master: tuple[BuildMaster, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    m, _ = master
    jobdir = m.basedir / "jobs"
    original = TryJobdirService.try_job

    async def try_job(self: TryJobdirService, **kwargs: Any) -> Any:
        if kwargs["properties"].get("color") == "boom":  # what a failing database does
            raise RuntimeError("the database is gone")
        return await original(self, **kwargs)

    monkeypatch.setattr(TryJobdirService, "try_job", try_job)
    with structlog.testing.capture_logs() as logs:
        (jobdir / "tmp" / "a-bad").write_bytes(_job("j-bad", '{"color": "boom"}'))
        (jobdir / "tmp" / "a-bad").replace(jobdir / "new" / "a-bad")
        await eventually((jobdir / "cur" / "a-bad").exists, within=60)
        (jobdir / "tmp" / "b-good").write_bytes(_job("j-good", '{"color": "blue"}'))
        (jobdir / "tmp" / "b-good").replace(jobdir / "new" / "b-good")
        await eventually((jobdir / "cur" / "b-good").exists, within=60)
    [failed] = [e for e in logs if e["event"] == "try_job_failed"]
    assert failed["file"] == str(jobdir / "new" / "a-bad")
    assert failed["reason"] == "RuntimeError: the database is gone"
    [buildset] = await m.db.buildsets.get_buildsets()
    assert buildset.external_idstring == "j-good"
    assert list((jobdir / "new").iterdir()) == []

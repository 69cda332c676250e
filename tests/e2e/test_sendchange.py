"""Changes over PB: the stock ``buildbot sendchange`` 4.3.0 and our ``buildyard sendchange``
log in to ``changes.PBChangeSource`` on the worker PB port (the stock worker is connected to
the same port), the change is stored with every field, and a SingleBranchScheduler builds it."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.master.model.results import Results
from buildyard.testing.masters import Running
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, end_popen, eventually
from buildyard.testing.stock import buildbot_venv
from buildyard.testing.workers import STOCK_PB, start_worker

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'pb': {{'port': 'tcp:{pb}:interface=127.0.0.1'}}}}
c['change_source'] = [changes.PBChangeSource(prefix="trunk/")]
c['schedulers'] = [schedulers.SingleBranchScheduler(
    name="on-main", builderNames=["b"], treeStableTimer=None, codebases=["harbor"],
    change_filter=util.ChangeFilter(branch="main"))]
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
    steps.ShellCommand(name="show", command=["echo", util.Interpolate(
        "revision=%(src:harbor:revision)s color=%(prop:color)s")]),
]))]
c['www'] = {{'port': 'tcp:{web}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""

REVISION = "3f1c9e0a7b2d4c6e8f0a1b3c5d7e9f1a2b4c6d8e"
COMMENTS = "Fix the fog lamp\n\nIt blinked twice ünder load.\n"


class Master:
    def __init__(self, master: BuildMaster, web: int, tmp_path: Path) -> None:
        self.master, self.web, self.tmp_path = master, web, tmp_path

    @property
    def pb_address(self) -> str:
        return f"127.0.0.1:{self.master.workers.listener.pb_port}"

    async def rest(self, path: str) -> Any:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.web}/api/v2/{path}") as response,
        ):
            text = await response.text()
            assert response.status == 200, text
            return json.loads(text)


@pytest.fixture
async def master(tmp_path: Path) -> AsyncIterator[Master]:
    basedir = tmp_path / "master"
    basedir.mkdir()
    web = free_port()
    (basedir / "master.cfg").write_text(CONFIG.format(pb=free_port(), web=web))
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
                yield Master(m, web, tmp_path)
            finally:
                end_popen(proc)
    finally:
        await m.stop()


def _sendchange(client: str, *args: str) -> subprocess.CompletedProcess[str]:
    if client == "buildyard":
        return buildyard("sendchange", *args)
    return subprocess.run(
        [str(buildbot_venv() / "bin" / "buildbot"), "sendchange", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("client", ["stock", "buildyard"])
async def test_a_sent_change_is_stored_whole_and_built(
    master: Master, tmp_path: Path, client: str
) -> None:
    (tmp_path / "rev").write_text(REVISION)
    (tmp_path / "log").write_text(COMMENTS, encoding="utf-8")
    done = await asyncio.to_thread(
        _sendchange,
        client,
        f"--master={master.pb_address}",
        "--auth=change:changepw",
        "--who=Ada Lovelace <ada@example.org>",
        "--repository=https://git.example.org/harbor.git",
        "--project=lighthouse",
        "--branch=main",
        "--category=release",
        f"--revision_file={tmp_path / 'rev'}",
        "--property=color:blue",
        "--property=url:http://example.org:8080/x",
        f"--logfile={tmp_path / 'log'}",
        "--when=1700000000",
        "--revlink=https://git.example.org/harbor/commit/3f1c9e0",
        "--encoding=utf8",
        "--codebase=harbor",
        "--vc=git",
        "trunk/src/lamp.py",
        "branches/old/lamp.py",
        "trunk/manual/fog.txt",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "change sent successfully" in done.stdout

    [change] = (await master.rest("changes"))["changes"]
    assert change["author"] == "Ada Lovelace <ada@example.org>"
    assert change["repository"] == "https://git.example.org/harbor.git"
    assert change["project"] == "lighthouse"
    assert change["branch"] == "main"
    assert change["category"] == "release"
    assert change["revision"] == REVISION
    assert change["comments"] == COMMENTS
    assert change["when_timestamp"] == 1700000000
    assert change["revlink"] == "https://git.example.org/harbor/commit/3f1c9e0"
    assert change["codebase"] == "harbor"
    # the prefix keeps the files under trunk/, without it
    assert change["files"] == ["src/lamp.py", "manual/fog.txt"]
    assert change["properties"] == {
        "color": ["blue", "Change"],
        "url": ["http://example.org:8080/x", "Change"],
    }
    assert change["sourcestamp"]["revision"] == REVISION
    assert change["sourcestamp"]["codebase"] == "harbor"

    db = master.master.db
    # --vc=git: the author becomes a user with a git identity, as in Buildbot
    [user] = await db.users.get_users()
    assert (user.identifier, dict(user.attributes)) == (
        "Ada Lovelace <ada@example.org>",
        {"git": "Ada Lovelace <ada@example.org>"},
    )

    async def built() -> bool:
        builds = await db.builds.get_builds()
        return bool(builds) and all(b.complete_at is not None for b in builds)

    await eventually(built, within=120)
    [build] = await db.builds.get_builds()
    running = Running(master=master.master, worker_dir=tmp_path / "worker", basedir=tmp_path)
    result = await running.result(build.id)
    assert result.build.results == Results.SUCCESS
    assert result.stdout("show") == f"revision={REVISION} color=blue\n"


@pytest.mark.parametrize("client", ["stock", "buildyard"])
async def test_a_wrong_password_is_refused_and_nothing_is_stored(
    master: Master, client: str
) -> None:
    done = await asyncio.to_thread(
        _sendchange,
        client,
        f"--master={master.pb_address}",
        "--auth=change:not-the-password",
        "--who=mallory",
        "--branch=main",
        "file.c",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "change not sent" in out
    assert "unknown user or wrong password" in out
    assert (await master.rest("changes"))["changes"] == []
    # the worker on the same port is untouched
    assert "w1" in master.master.workers.listener.connections


OWN_PORT_CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'pb': {{'port': 'tcp:{pb}:interface=127.0.0.1'}}}}
c['change_source'] = [{source}]
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory())]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


async def test_a_change_source_on_its_own_port_follows_reconfig(tmp_path: Path) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    pb, own = free_port(), free_port()
    cfg = basedir / "master.cfg"

    def write(source: str) -> None:
        cfg.write_text(OWN_PORT_CONFIG.format(pb=pb, source=source))

    async def send(password: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            _sendchange,
            "buildyard",
            f"--master=127.0.0.1:{own}",
            f"--auth=change:{password}",
            "--who=ada",
            "--branch=main",
            "a.c",
        )

    source = f"changes.PBChangeSource(passwd='one', port='tcp:{own}:interface=127.0.0.1')"
    write(source)
    m = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(m.db)
    await m.start()
    try:
        assert (await send("one")).returncode == 0
        write(source.replace("'one'", "'two'"))
        assert await m.reconfig() is True
        refused = await send("one")
        assert refused.returncode == 1
        assert "unknown user or wrong password" in refused.stderr
        assert (await send("two")).returncode == 0
        assert len(await m.db.changes.get_changes()) == 2
        # without a change source the port is closed
        write("")
        assert await m.reconfig() is True
        gone = await send("two")
        assert gone.returncode == 1
        assert f"nothing listens at 127.0.0.1:{own}" in gone.stderr
    finally:
        await m.stop()


async def test_passwd_may_be_a_secret(tmp_path: Path) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for name, value in {"changepw": "s3cret-one", "changepw2": "s3cret-two"}.items():
        (secrets_dir / name).write_text(value + "\n")
        (secrets_dir / name).chmod(0o600)
    pb, own = free_port(), free_port()
    cfg = basedir / "master.cfg"

    def write(secret: str) -> None:
        source = (
            f"changes.PBChangeSource(passwd=util.Secret({secret!r}), "
            f"port='tcp:{own}:interface=127.0.0.1')]\n"
            f"c['secretsProviders'] = [secrets.SecretInAFile({str(secrets_dir)!r})"
        )
        cfg.write_text(OWN_PORT_CONFIG.format(pb=pb, source=source))

    async def send(password: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            _sendchange,
            "buildyard",
            f"--master=127.0.0.1:{own}",
            f"--auth=change:{password}",
            "--who=ada",
            "--branch=main",
            "a.c",
        )

    write("changepw")
    m = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(m.db)
    await m.start()
    try:
        sent = await send("s3cret-one")
        assert sent.returncode == 0, sent.stderr
        write("changepw2")
        assert await m.reconfig() is True
        refused = await send("s3cret-one")
        assert "unknown user or wrong password" in refused.stderr
        assert (await send("s3cret-two")).returncode == 0
        assert len(await m.db.changes.get_changes()) == 2
        # the value is hidden as any secret the master looked up
        assert m.redactor.redact("s3cret-two") == "<changepw2>"
    finally:
        await m.stop()

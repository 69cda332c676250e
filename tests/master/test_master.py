"""BuildMaster in-process: start, stop and reconfig ordering, and what each leaves in the db."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database
from buildyard.master.master import BuildMaster
from buildyard.testing.clock import FakeClock
from buildyard.testing.postgres import free_port

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w", "pass")]
c['builders'] = [
{builders}
]
c['www'] = {{'port': 'tcp:{port}:interface=127.0.0.1'}}
c['db'] = {{'db_url': {db_url!r}}}
"""


def write(basedir: Path, db_url: str, port: int, *names: str, extra: str = "") -> None:
    builders = "\n".join(
        f"    util.BuilderConfig(name={n!r}, workernames=['w'], factory=util.BuildFactory()),"
        for n in names
    )
    text = CONFIG.format(builders=builders, port=port, db_url=db_url) + extra
    (basedir / "master.cfg").write_text(text)


@pytest.fixture
async def upgraded(db_url: str) -> str:
    db = Database(db_url, clock=FakeClock())
    await migrate.upgrade(db)
    await db.close()
    return db_url


async def _links(db_url: str) -> tuple[list[tuple[int, int]], list[str]]:
    db = Database(db_url, clock=FakeClock())
    try:
        async with db.reading() as c:
            masters = [(r.id, r.active) for r in await c.execute(sa.select(t.masters))]
            names = (
                await c.execute(
                    sa.select(t.builders.c.name)
                    .join(t.builder_masters, t.builder_masters.c.builderid == t.builders.c.id)
                    .order_by(t.builders.c.name)
                )
            ).scalars()
            return masters, list(names)
    finally:
        await db.close()


async def test_start_and_clean_stop(tmp_path: Path, upgraded: str) -> None:
    write(tmp_path, upgraded, free_port(), "a", "b")
    master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
    await master.start()
    assert await _links(upgraded) == ([(master.masterid, 1)], ["a", "b"])
    assert set(master.botmaster.builders) == {"a", "b"}
    assert master.botmaster.brd.parent is master.botmaster
    await master.stop()
    assert await _links(upgraded) == ([(master.masterid, 0)], [])
    assert not master.running


async def test_a_clean_shutdown_with_no_build_running_ends_run(
    tmp_path: Path, upgraded: str
) -> None:
    """SIGUSR1 (``buildyard stop --clean``, a chat's ``shutdown start``): with no build
    running, the clean shutdown stops the master at once, through run() as on SIGTERM (exit
    code 0, marked stopped in the database)."""
    write(tmp_path, upgraded, free_port(), "a")
    master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
    run = asyncio.create_task(master.run())
    async with asyncio.timeout(60):
        while master.masterid is None or not master.running:  # noqa: ASYNC110 (no start event)
            await asyncio.sleep(0.05)
    # what `buildyard stop --clean` sends
    os.kill(os.getpid(), signal.SIGUSR1)
    async with asyncio.timeout(60):
        assert await run == 0
    assert master.botmaster.shutting_down and not master.botmaster.clean_shutdown()
    assert master.stop_requested.is_set()  # the clean shutdown asked run() to stop
    assert await _links(upgraded) == ([(master.masterid, 0)], [])


async def test_reconfig_keeps_unchanged_builders_and_survives_a_taken_port(
    tmp_path: Path, upgraded: str
) -> None:
    port = free_port()
    write(tmp_path, upgraded, port, "a", "b")
    master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
    await master.start()
    try:
        a = master.botmaster.builders["a"]
        write(tmp_path, upgraded, port, "a", "c")
        assert await master.reconfig() is True
        assert master.botmaster.builders["a"] is a  # the same running service
        assert (await _links(upgraded))[1] == ["a", "c"]

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            write(tmp_path, upgraded, taken.getsockname()[1], "a", "c")
            assert await master.reconfig() is False
        assert master.running
        assert master.www.port == port  # the old listener still serves

        write(tmp_path, upgraded, port, "a", "c", extra="import sys\nsys.exit(3)\n")
        assert await master.reconfig() is False
        assert master.running
        assert (await _links(upgraded))[1] == ["a", "c"]
    finally:
        await master.stop()


async def _get(port: int, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}{path}", headers={"Accept": "application/json"}) as r,
    ):
        assert r.status == 200, await r.text()
        return await r.json()


async def test_reconfig_of_title_url_and_www_settings_keeps_serving_on_the_same_port(
    tmp_path: Path, upgraded: str
) -> None:
    port = free_port()
    write(tmp_path, upgraded, port, "a")
    master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
    await master.start()
    try:
        assert (await _get(port, "/config"))["title"] == "Buildbot"  # the default, as in Buildbot
        extra = (
            "c['title'] = 'Renamed'\n"
            f"c['buildbotURL'] = 'http://127.0.0.1:{port}/'\n"
            "c['www']['auth'] = util.UserPasswordAuth({'alice': 'pw'})\n"
        )
        write(tmp_path, upgraded, port, "a", extra=extra)
        assert await master.reconfig() is True
        assert master.www.port == port
        config = await _get(port, "/config")
        assert config["title"] == "Renamed"
        assert config["buildbotURL"] == f"http://127.0.0.1:{port}/"
        assert config["auth"]["name"] != "NoAuth"
        names = [b["name"] for b in (await _get(port, "/api/v2/builders"))["builders"]]
        assert names == ["a"]
    finally:
        await master.stop()


async def test_failed_start_releases_what_it_registered(tmp_path: Path, upgraded: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        write(tmp_path, upgraded, taken.getsockname()[1], "a")
        master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
        with pytest.raises(OSError, match=r"address already in use|Errno 98"):
            await master.start()
    masters, linked = await _links(upgraded)
    assert masters == [(master.masterid, 0)]
    assert linked == []


async def test_expired_while_alive_relinks_its_builders(tmp_path: Path, upgraded: str) -> None:
    write(tmp_path, upgraded, free_port(), "a")
    master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
    await master.start()
    try:
        # another master found this one silent (say it stalled) and expired it
        expired = await master.data.updates.expire_masters(expire_after=-3600)
        assert expired == [master.masterid]
        assert await _links(upgraded) == ([(master.masterid, 0)], [])
        await master.housekeeping.check_in()
        assert await _links(upgraded) == ([(master.masterid, 1)], ["a"])
    finally:
        await master.stop()


async def test_configured_workers_follow_the_config(tmp_path: Path, upgraded: str) -> None:
    port = free_port()
    extra = "c['workers'].append(worker.Worker('w2', 'pass'))\n"
    write(tmp_path, upgraded, port, "a", "b", extra=extra)
    master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
    await master.start()
    try:

        async def configured() -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for w in await master.db.workers.get_workers():
                names = [
                    (await master.db.builders.get_builder(c.builderid)).name  # type: ignore[union-attr]
                    for c in w.configured_on
                ]
                out[w.name] = sorted(names)
            return out

        assert await configured() == {"w": ["a", "b"], "w2": []}
        write(tmp_path, upgraded, port, "a", extra="")
        assert await master.reconfig() is True
        assert await configured() == {"w": ["a"], "w2": []}
    finally:
        await master.stop()
    assert await configured() == {"w": [], "w2": []}  # a stopped master configures nothing
    await master.db.close()


async def test_validation_patterns_reach_the_force_schedulers(
    tmp_path: Path, upgraded: str
) -> None:
    """c['validation'] decides what a force form's free-form property may be called."""
    extra = """
c['schedulers'] = [schedulers.ForceScheduler(
    "force", ["a"], properties=[util.AnyPropertyParameter("any")])]
c['validation'] = {'property_name': r'^[a-z ]+$'}
"""
    write(tmp_path, upgraded, free_port(), "a", extra=extra)
    master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
    await master.start()
    try:
        force = master.scheduler_manager.configured()["force"]
        owner = "Ann <ann@example.com>"
        # a space is not in Buildbot's default pattern, but is in this master's
        await force.force(owner, any_name="two words", any_value="v")  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="bad property name='Upper'"):
            await force.force(owner, any_name="Upper", any_value="v")  # type: ignore[attr-defined]
    finally:
        await master.stop()


async def test_a_throwaway_database_gets_its_schema_at_start(tmp_path: Path) -> None:
    # Buildbot's docker example: c['db'] = {'db_url': 'sqlite://'}, and no upgrade-master
    write(tmp_path, "sqlite://", free_port(), "a")
    master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
    await master.start()
    try:
        assert set(master.botmaster.builders) == {"a"}
        assert [b.name for b in await master.db.builders.get_builders()] == ["a"]
    finally:
        await master.stop()

"""Two master processes on one PostgreSQL: one is SIGKILLed, the other expires it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from buildyard.common.clock import SystemClock
from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database
from buildyard.testing.processes import buildyard, end_popen, spawn_master

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

INTERVAL = 1
EXPIRE_AFTER = 4

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w", "pass")]
c['builders'] = [
    util.BuilderConfig(name={builder!r}, workernames=["w"], factory=util.BuildFactory()),
]
c['db'] = {{'db_url': {db_url!r}}}
c['multiMaster'] = True
c['masterHouseKeeping'] = {{'interval': {interval}, 'expireAfter': {expire}}}
"""


async def _state(db: Database) -> dict[str, tuple[bool, list[str]]]:
    """Each master's name -> (active, names of the builders linked to it)."""
    out: dict[str, tuple[bool, list[str]]] = {}
    async with db.reading() as c:
        for m in await c.execute(sa.select(t.masters)):
            rows = await c.execute(
                sa.select(t.builders.c.name)
                .join(t.builder_masters, t.builder_masters.c.builderid == t.builders.c.id)
                .where(t.builder_masters.c.masterid == m.id)
            )
            out[m.name.rsplit(":", 1)[-1]] = (bool(m.active), sorted(rows.scalars()))
    return out


State = dict[str, tuple[bool, list[str]]]


async def _wait(db: Database, predicate: Callable[[State], bool], within: float) -> State:
    deadline = time.monotonic() + within
    state = await _state(db)
    while time.monotonic() < deadline:
        state = await _state(db)
        if predicate(state):
            return state
        await asyncio.sleep(0.2)
    return state


async def test_killed_master_is_expired_by_the_other(tmp_path: Path, postgres_url: str) -> None:
    dirs = [tmp_path / "one", tmp_path / "two"]
    for d, builder in zip(dirs, ("b-one", "b-two"), strict=True):
        d.mkdir()
        (d / "master.cfg").write_text(
            CONFIG.format(
                builder=builder, db_url=postgres_url, interval=INTERVAL, expire=EXPIRE_AFTER
            )
        )
    upgraded = buildyard("upgrade-master", str(dirs[0]))
    assert upgraded.returncode == 0, upgraded.stderr
    db = Database(postgres_url, clock=SystemClock())
    procs = [spawn_master(d) for d in dirs]
    one, two = (str(d.resolve()) for d in dirs)
    try:
        state = await _wait(
            db, lambda s: s.get(one, (False,))[0] and s.get(two, (False,))[0], within=60
        )
        assert state == {one: (True, ["b-one"]), two: (True, ["b-two"])}, (
            state,
            (dirs[0] / "out.log").read_text()[-2000:],
            (dirs[1] / "out.log").read_text()[-2000:],
        )

        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(timeout=10)
        killed_at = time.monotonic()
        state = await _wait(db, lambda s: not s[one][0], within=EXPIRE_AFTER + 20)
        took = time.monotonic() - killed_at
        # the dead master is inactive and holds nothing; the live one is untouched
        assert state == {one: (False, []), two: (True, ["b-two"])}, state
        # within the window: silent for EXPIRE_AFTER, noticed at the next check-in of the other
        assert took <= EXPIRE_AFTER + 2 * INTERVAL + 3, took
        assert "master_expired" in (dirs[1] / "out.log").read_text()
        assert procs[1].poll() is None
    finally:
        for p in procs:
            end_popen(p)
        await db.close()
    # the survivor's clean stop marks it inactive too
    assert (await _state(db))[two] == (False, [])
    await db.close()

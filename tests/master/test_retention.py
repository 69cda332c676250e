"""Retention: c['changeHorizon'] keeps only the newest changes (docs/database.md, Retention)."""

from __future__ import annotations

from pathlib import Path

from buildyard.common.clock import SystemClock
from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.db.connector import Database
from buildyard.master.master import BuildMaster
from buildyard.testing.processes import eventually

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['protocols'] = {{}}
c['workers'] = [worker.Worker("w", "p")]
c['builders'] = [util.BuilderConfig(name="b", workernames=["w"], factory=util.BuildFactory())]
c['changeHorizon'] = {horizon}
"""


async def _changes(db: Database) -> list[int]:
    return [ch.id for ch in await db.changes.get_changes()]


async def test_change_horizon_trims_changes_at_start_and_after_a_reconfig(tmp_path: Path) -> None:
    # the c['changeHorizon'] applied: six changes wait in the database, three are kept
    (tmp_path / "master.cfg").write_text(CONFIG.format(horizon=3))
    db = Database("sqlite:///state.sqlite", clock=SystemClock(), basedir=tmp_path)
    await migrate.upgrade(db)
    ids = [
        await db.changes.add_change(author="a", comments=f"c{i}", revision=str(i), files=["f"])
        for i in range(6)
    ]
    master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
    await master.start()
    try:

        async def trimmed() -> bool:
            return await _changes(db) == ids[3:]

        await eventually(trimmed, within=30)
        assert master.housekeeping.statistics()["changes_pruned"] == 3

        (tmp_path / "master.cfg").write_text(CONFIG.format(horizon=1))
        assert await master.reconfig() is True
        # what the hourly pass runs, without waiting the hour
        assert await master.housekeeping.prune_changes() == 2
        assert await _changes(db) == ids[5:]
    finally:
        await master.stop()
        await db.close()

"""Retention (docs/database.md): c['changeHorizon'] keeps only the newest changes; what
util.JanitorConfigurator adds to the configuration (its run: tests/e2e/test_janitor.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from buildyard.common.clock import SystemClock
from buildyard.common.errors import ConfigErrors
from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.db.connector import Database
from buildyard.master.master import BuildMaster
from buildyard.master.workers.config import LocalWorker
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


JANITOR = """\
import datetime
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['workers'] = [worker.Worker("w", "p")]
c['builders'] = [util.BuilderConfig(name="b", workernames=["w"], factory=util.BuildFactory())]
c['configurators'] = [util.JanitorConfigurator({args})]
"""


def _janitor_config(tmp_path: Path, args: str) -> Any:
    (tmp_path / "master.cfg").write_text(JANITOR.format(args=args))
    return load_master_config(tmp_path)


def test_the_janitor_adds_its_builder_worker_and_schedulers_only_with_a_horizon(
    tmp_path: Path,
) -> None:
    config = _janitor_config(tmp_path, "logHorizon=datetime.timedelta(days=3), minute=5")
    builder = next(b for b in config.builders if b.name == "__Janitor")
    assert builder.workernames == ("__Janitor",)
    assert [type(s).__name__ for s in builder.factory.steps] == ["LogChunksJanitor"]
    assert any(w.name == "__Janitor" and isinstance(w, LocalWorker) for w in config.workers)
    names = sorted(s.name for s in config.schedulers)
    assert names == ["__Janitor", "__Janitor_force"]
    assert config.warnings == ()

    nothing = _janitor_config(tmp_path, "hour=4")  # no horizon: nothing to clean
    assert [b.name for b in nothing.builders] == ["b"] and nothing.schedulers == ()


def test_the_janitor_names_what_it_does_not_use_and_refuses_bad_horizons(
    tmp_path: Path,
) -> None:
    config = _janitor_config(tmp_path, "logHorizon=datetime.timedelta(days=3), weekday=2")
    assert any("JanitorConfigurator: weekday has no effect" in w for w in config.warnings)
    with pytest.raises(ConfigErrors, match=r"logHorizon must be a datetime\.timedelta, not 30"):
        _janitor_config(tmp_path, "logHorizon=30")

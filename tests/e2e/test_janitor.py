"""util.JanitorConfigurator: its builder, run on the master's LocalWorker, deletes the lines of
logs and the build data older than the horizons, and leaves the newer ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.model.logs import LogType
from buildyard.master.model.results import Results
from buildyard.master.schedulers.timed import Nightly
from buildyard.testing.masters import running_master

pytestmark = pytest.mark.e2e

BODY = """\
import datetime
c['configurators'] = [util.JanitorConfigurator(
    logHorizon=datetime.timedelta(days=1),
    build_data_horizon=datetime.timedelta(days=2),
    hour=3,
    dayOfWeek=6,
)]
f = util.BuildFactory([steps.ShellCommand(name="say", command="seq 1 3000")])
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=f)]
"""

TEN_DAYS = 10 * 24 * 3600


async def test_the_janitor_builder_deletes_old_log_lines_and_build_data(tmp_path: Path) -> None:
    async with running_master(tmp_path, BODY) as run:
        db = run.master.db
        old, new = await run.build("b"), await run.build("b")
        for build in (old, new):
            await db.builds.add_build_data(build.build.id, "blob", b"\x00data", "test")
        # the first build ran ten days ago, as far as the database knows
        async with db.transaction() as conn:
            await conn.execute(
                t.steps.update()
                .where(t.steps.c.buildid == old.build.id)
                .values(started_at=t.steps.c.started_at - TEN_DAYS)
            )
            await conn.execute(
                t.builds.update()
                .where(t.builds.c.id == old.build.id)
                .values(
                    started_at=t.builds.c.started_at - TEN_DAYS,
                    complete_at=t.builds.c.complete_at - TEN_DAYS,
                )
            )
        [old_log] = await db.logs.get_logs(old.steps[0].id)
        [new_log] = await db.logs.get_logs(new.steps[0].id)
        async with db.reading() as conn:
            old_chunks = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(t.logchunks)
                    .where(t.logchunks.c.logid == old_log.id)
                )
            ).scalar_one()
        assert old_chunks >= 1

        janitor = await run.build("__Janitor")  # what its schedulers would ask for
        assert janitor.build.results == Results.SUCCESS
        assert [(s.name, s.state_string) for s in janitor.steps] == [
            ("LogChunksJanitor", f"deleted {old_chunks} logchunks"),
            ("BuildDataJanitor", "deleted 1 build data key-value pairs"),
        ]

        gone, kept = await db.logs.get_log(old_log.id), await db.logs.get_log(new_log.id)
        assert gone is not None and gone.type == LogType.DELETED
        assert await db.logs.get_log_lines(old_log.id, 0, 10) == ""
        assert kept is not None and kept.type != LogType.DELETED
        text = await db.logs.get_log_lines(new_log.id, 0, kept.num_lines - 1)
        assert text == new.logs[("say", "stdio")] and "o3000\n" in text
        assert await db.builds.get_all_build_data(old.build.id) == []
        assert [d.name for d in await db.builds.get_all_build_data(new.build.id)] == ["blob"]

        # its schedulers: the nightly one at the hour and day given, and one to force it
        schedulers: dict[str, Any] = {
            s.name: s  # type: ignore[attr-defined]
            for s in run.master.config.schedulers
        }
        nightly = schedulers["__Janitor"]
        expected = Nightly(name="same", builderNames=["x"], hour=3, dayOfWeek=6).rule
        assert nightly.builderNames == ["__Janitor"] and nightly.rule == expected
        assert nightly.rule.hours == {3} and nightly.rule.minutes == {0}
        assert schedulers["__Janitor_force"].builderNames == ["__Janitor"]

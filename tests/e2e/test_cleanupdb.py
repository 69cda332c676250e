"""``buildyard cleanupdb``: on a database filled by real builds, it deletes the lines of logs
older than the janitor's logHorizon, compresses the stored logs with c['logCompressionMethod']
(again with --force after the method changed), keeps every line readable, and compacts."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from buildyard.common.clock import SystemClock
from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database
from buildyard.master.model.logs import LogType
from buildyard.testing.masters import running_master
from buildyard.testing.processes import buildyard

pytestmark = pytest.mark.e2e

BODY = """\
import datetime
c['logCompressionMethod'] = {method!r}
{janitor}
f = util.BuildFactory([steps.ShellCommand(name="say", command="seq 1 20000")])
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=f)]
"""
JANITOR = "c['configurators'] = [util.JanitorConfigurator(logHorizon=datetime.timedelta(days=1))]"
TEN_DAYS = 10 * 24 * 3600


async def _chunk_methods(db: Database, logid: int) -> set[int]:
    async with db.reading() as conn:
        rows = await conn.execute(
            sa.select(t.logchunks.c.compressed).where(t.logchunks.c.logid == logid)
        )
        return set(rows.scalars())


async def test_cleanupdb_applies_the_horizon_and_the_compression(
    tmp_path: Path, db_url: str
) -> None:
    async with running_master(
        tmp_path, BODY.format(method="raw", janitor=""), db_url=db_url
    ) as run:
        old, new = await run.build("b"), await run.build("b")
        basedir = run.basedir
    db = Database(db_url, clock=SystemClock(), basedir=basedir)
    try:
        async with db.transaction() as conn:  # the first build ran ten days ago
            await conn.execute(
                t.steps.update()
                .where(t.steps.c.buildid == old.build.id)
                .values(started_at=t.steps.c.started_at - TEN_DAYS)
            )
        [old_log] = await db.logs.get_logs(old.steps[0].id)
        [new_log] = await db.logs.get_logs(new.steps[0].id)
        text = new.logs[("say", "stdio")]
        assert await _chunk_methods(db, new_log.id) == {0}  # stored raw
    finally:
        await db.close()
    sqlite_file = Path(db_url.removeprefix("sqlite:///"))

    def size() -> int:  # the file and its write-ahead log
        wal = sqlite_file.with_name(sqlite_file.name + "-wal")
        return sqlite_file.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    size_before = size() if db_url.startswith("sqlite") else 0

    def configure(method: str) -> None:
        head = (basedir / "master.cfg").read_text().split("import datetime")[0]
        (basedir / "master.cfg").write_text(head + BODY.format(method=method, janitor=JANITOR))

    async def check(methods: set[int]) -> None:
        db = Database(db_url, clock=SystemClock(), basedir=basedir)
        try:
            assert await _chunk_methods(db, new_log.id) == methods
            kept = await db.logs.get_log(new_log.id)
            assert kept is not None
            assert await db.logs.get_log_lines(new_log.id, 0, kept.num_lines - 1) == text
            gone = await db.logs.get_log(old_log.id)
            assert gone is not None and gone.type == LogType.DELETED
            assert await _chunk_methods(db, old_log.id) == set()
        finally:
            await db.close()

    configure("zstd")
    done = buildyard("cleanupdb", str(basedir))
    assert done.returncode == 0, done.stderr
    assert "deleted" in done.stdout and "logchunks" in done.stdout
    assert " 100%" in done.stdout and "executing vacuum operation" in done.stdout
    assert done.stdout.rstrip().endswith("cleanup complete")
    await check({4})
    if size_before:  # the deleted and compressed lines' space is given back
        assert size() < size_before

    # another method: chunks already compressed stay as they are, unless --force
    configure("gz")
    assert buildyard("cleanupdb", "-q", str(basedir)).returncode == 0
    await check({4})
    quiet = buildyard("cleanupdb", "--quiet", "--force", str(basedir))
    assert quiet.returncode == 0 and quiet.stdout == ""
    await check({1})

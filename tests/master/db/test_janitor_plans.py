"""The janitor's deletions on a long history read what is kept, not the history: every
statement of ``delete_old_logs`` and ``delete_old_build_data`` explained on both backends (no
timing: the plans say which rows each one reads)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database
from tests.master.db import _rows

# the history: builds (with a step and a log each) started at 1..N, the logs of the first
# nine tenths already deleted by earlier runs (type "d"), data kept for the last tenth
N = 5000
KEPT_FROM = N * 9 // 10
HORIZON = N * 95 // 100  # this run deletes what started (or completed) before it


async def _fill(database: Database) -> None:
    masterid = await _rows.add_master(database)
    builderid = await _rows.add_builder(database)
    ids = range(1, N + 1)
    async with database.transaction() as c:
        await c.execute(
            t.buildsets.insert(), [{"id": i, "submitted_at": i, "complete": 1} for i in ids]
        )
        await c.execute(
            t.buildrequests.insert(),
            [
                {"id": i, "buildsetid": i, "builderid": builderid, "submitted_at": i, "complete": 1}
                for i in ids
            ],
        )
        await c.execute(
            t.builds.insert(),
            [
                {
                    "id": i,
                    "number": i,
                    "builderid": builderid,
                    "buildrequestid": i,
                    "masterid": masterid,
                    "started_at": i,
                    "complete_at": i,
                    "locks_duration_s": 0,
                    "state_string": "done",
                    "results": 0,
                }
                for i in ids
            ],
        )
        await c.execute(
            t.steps.insert(),
            [
                {
                    "id": i,
                    "number": 0,
                    "name": "shell",
                    "buildid": i,
                    "started_at": i,
                    "state_string": "done",
                    "urls_json": "[]",
                }
                for i in ids
            ],
        )
        await c.execute(
            t.logs.insert(),
            [
                {
                    "id": i,
                    "name": "stdio",
                    "slug": "stdio",
                    "stepid": i,
                    "complete": 1,
                    "num_lines": 1,
                    "type": "d" if i < KEPT_FROM else "s",
                }
                for i in ids
            ],
        )
        await c.execute(
            t.logchunks.insert(),
            [
                {"logid": i, "first_line": 0, "last_line": 0, "content": b"line\n", "compressed": 0}
                for i in range(KEPT_FROM, N + 1)
            ],
        )
        await c.execute(
            t.build_data.insert(),
            [
                {"buildid": i, "name": "d", "value": b"x", "length": 1, "source": "test"}
                for i in range(KEPT_FROM, N + 1)
            ],
        )


async def test_the_janitor_reads_the_kept_logs_and_data_not_the_history(
    database: Database,
) -> None:
    await _fill(database)
    postgres = database.backend == "postgresql"
    if postgres:  # the planner's statistics, as autovacuum would have them
        async with database.transaction() as c:
            await c.execute(sa.text("ANALYZE"))
    statements: dict[str, Any] = {}

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.setdefault(" ".join(statement.split()), parameters)

    engine = database.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        chunks = await database.logs.delete_old_logs(HORIZON, batch=100)
        data = await database.builds.delete_old_build_data(HORIZON, batch=100)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    # what went: the kept logs and data older than the horizon, nothing else
    assert chunks == HORIZON - KEPT_FROM
    assert data == HORIZON - KEPT_FROM
    async with database.reading() as c:
        kept = (await c.execute(sa.select(sa.func.min(t.logchunks.c.logid)))).scalar_one()
        assert kept == HORIZON

    plans: dict[str, str] = {}
    async with database.reading() as c:
        for statement, parameters in statements.items():
            explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
            rows = await c.exec_driver_sql(explain + statement, parameters)
            plans[statement] = "\n".join(str(r[-1]) for r in rows)
    pick = [p for s, p in plans.items() if "JOIN steps" in s]
    assert len(pick) == 1 and "logs_kept" in pick[0], plans
    # the logs marked deleted whose chunks stayed: found from the chunks, not from every log
    leftovers = [p for s, p in plans.items() if s.startswith("SELECT DISTINCT logchunks.logid")]
    assert len(leftovers) == 1, plans
    for table in ("builds", "steps", "logs"):
        for line in "\n".join(plans.values()).splitlines():
            if postgres:
                assert f"Seq Scan on {table} " not in f"{line} ", (table, plans)
            else:  # "SCAN t" or "SCAN t USING [COVERING] INDEX i": every row of t, or of i
                assert not f"{line.strip()} ".startswith(f"SCAN {table} "), (table, plans)

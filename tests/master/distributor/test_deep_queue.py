"""The distributor's work per started build does not grow with the queue (issue 19).

A real master on real SQLite with a real worker gets 100, then (another master) 10,000 pending
requests, inserted in bulk in its database (pairs of requests share a source stamp, so that
default collapsing has a match to find for every build). Each distribution pass that starts a
build is measured: the database statements it ran itself (its own task; the builds run in
tasks of their own) and the distributor's steps (requests and index entries it looked at,
``statistics()['steps']``). The passes that started one build must cost the same at both
depths; the one that first read the queue in full is left out, as a start-up cost.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.master import BuildMaster
from buildyard.testing.masters import running_master
from buildyard.testing.processes import eventually
from buildyard.testing.sqltrace import sqlite_statements

BODY = """
c['builders'] = [
    util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="quick", command=["true"]),
    ])),
]
"""

BUILDS = 6  # builds measured at each depth, after the first
# what a pass that starts one build runs: the claim of the request and its pair, and the
# start of the build (the held workers, paused or shutting down, are read once and kept until
# their state_updated events or the next full reading)
PASS_STATEMENTS = 8


async def _insert_pending(master: BuildMaster, count: int) -> None:
    """``count`` unclaimed requests of builder ``b``, in a few statements: one buildset each,
    consecutive pairs sharing one source stamp (so they collapse into one build)."""
    db = master.db
    builderid = await master.data.updates.find_builder_id("b")
    now = 1_700_000_000
    async with db.transaction() as c:
        first_ss = int((await c.execute(sa.select(sa.func.max(t.sourcestamps.c.id)))).scalar() or 0)
        first_bs = int((await c.execute(sa.select(sa.func.max(t.buildsets.c.id)))).scalar() or 0)
        first_br = int(
            (await c.execute(sa.select(sa.func.max(t.buildrequests.c.id)))).scalar() or 0
        )
        stamps = [
            {
                "id": first_ss + 1 + i,
                "ss_hash": hashlib.sha1(f"deep-{i}".encode()).hexdigest(),
                "branch": "main",
                "revision": f"{i:040x}",
                "repository": "repo",
                "codebase": "",
                "project": "",
                "created_at": now,
            }
            for i in range(count // 2)
        ]
        buildsets = [
            {"id": first_bs + 1 + i, "reason": "deep", "submitted_at": now + i, "complete": 0}
            for i in range(count)
        ]
        links = [
            {"buildsetid": first_bs + 1 + i, "sourcestampid": first_ss + 1 + i // 2}
            for i in range(count)
        ]
        requests = [
            {
                "id": first_br + 1 + i,
                "buildsetid": first_bs + 1 + i,
                "builderid": builderid,
                "priority": 0,
                "complete": 0,
                "submitted_at": now + i,
                "waited_for": 0,
            }
            for i in range(count)
        ]
        for table, rows in (
            (t.sourcestamps, stamps),
            (t.buildsets, buildsets),
            (t.buildset_sourcestamps, links),
            (t.buildrequests, requests),
        ):
            await c.execute(table.insert(), rows)


async def _cost_per_build(tmp_path: Path, pending: int) -> set[tuple[int, int]]:
    """(statements, steps) of each pass that started exactly one build."""
    await asyncio.to_thread(tmp_path.mkdir)
    async with running_master(tmp_path, BODY) as running:
        master = running.master
        brd = master.botmaster.brd
        brd.resync_interval = 3600.0  # no timed full reading inside the measured passes
        await _insert_pending(master, pending)

        pass_task: list[asyncio.Task[Any] | None] = [None]
        statements = [0]

        # the passes' statements that read the unclaimed requests (a whole-queue reading)
        queue_reads: list[str] = []

        def on_statement(sql: str) -> None:
            if asyncio.current_task() is pass_task[0]:
                statements[0] += 1
                if "buildrequest_claims.brid IS NULL" in sql:
                    queue_reads.append(sql)

        costs: list[tuple[int, int, int, bool]] = []
        distribute = brd.distribute
        # once the builds measured have started, no more start (the queue must stay deep
        # however fast the builds run while the test looks)
        enough = [brd.started + BUILDS + 1]

        async def measured() -> None:
            pass_task[0] = asyncio.current_task()
            statements[0] = 0
            before = brd.statistics()
            try:
                await distribute()
            finally:
                if brd.started >= enough[0]:
                    brd.hold = True
                after = brd.statistics()
                costs.append(
                    (
                        after["started"] - before["started"],
                        statements[0],
                        after["steps"] - before["steps"],
                        after["resyncs"] != before["resyncs"],
                    )
                )

        brd.distribute = measured  # type: ignore[method-assign]
        try:
            with sqlite_statements(master, on_statement):
                started = brd.started
                resyncs_before = brd.statistics()["resyncs"]
                brd.request_resync()  # the rows came without events: read them
                await eventually(lambda: brd.started >= started + BUILDS + 1, within=120)
        finally:
            brd.distribute = distribute  # type: ignore[method-assign]
        # every build took two requests (a pair), and the queue is still deep
        claimed = await master.db.buildrequests.count_buildrequests(claimed=True)
        assert claimed >= 2 * (BUILDS + 1)
        assert brd.statistics()["pending"] >= pending - 2 * (BUILDS + 4)
        # the queue was read once in full (the start-up reading asked for above), and otherwise
        # never: the other passes worked from the index
        assert len(queue_reads) == brd.statistics()["resyncs"] - resyncs_before == 1
        return {
            (n_statements, n_steps)
            for n_started, n_statements, n_steps, resynced in costs
            if n_started == 1 and not resynced
        }


async def test_work_per_started_build_is_the_same_at_100_and_10000_pending(
    tmp_path: Path,
) -> None:
    shallow = await _cost_per_build(tmp_path / "shallow", 100)
    deep = await _cost_per_build(tmp_path / "deep", 10_000)
    assert shallow, "no pass started exactly one build at 100 pending"
    assert deep, "no pass started exactly one build at 10,000 pending"
    # each pass pops the request, finds its pair through the stamps index, claims both and
    # starts the build: the same statements and steps whatever the queue's depth
    assert shallow == deep
    assert len(deep) == 1
    # and that many statements: a statement that comes back fails here
    assert {n_statements for n_statements, _steps in deep} == {PASS_STATEMENTS}

"""The database statements of one one-step build are pinned (issue 19: master CPU per build).

A real master on real SQLite with a real worker runs one-step builds (``true``, whose stdio log
is a few header lines), each requested with ``add_buildset`` and waited for through its
buildset's ``complete`` event. Every statement that reaches sqlite3 in that time is counted
(prepared ones included, through a trace callback), except those of the distributor's passes
(tests/master/distributor/test_deep_queue.py pins what a pass costs) and of the master's
heartbeat (the ``masters`` table). The count must not grow: a statement that comes back fails
here. When a change saves statements, lower the figures below with it.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from buildyard.testing.masters import add_plain_buildset, running_master
from buildyard.testing.sqltrace import sqlite_statements

BODY = """
c['builders'] = [
    util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="quick", command=["true"]),
    ])),
]
"""

# what one one-step build costs outside the distributor (its claim is the distributor's):
# the buildset and its request (read back for their events); the build's row with its
# buildset's properties and stamps read, and its own properties and "building" stored; the
# step added and started; its state string; the stdio log added; the stdio log's last lines
# appended, compressed and closed with the step's end; and the build's end with its request
# and buildset
STATEMENTS = 62
TRANSACTIONS = 7
BUILDS = 3


def _one_line(sql: str) -> str:
    return re.sub(r"\s+", " ", sql)[:140]


async def test_a_one_step_build_runs_a_fixed_number_of_statements(tmp_path: Path) -> None:
    async with running_master(tmp_path, BODY) as running:
        master = running.master
        brd = master.botmaster.brd
        await running.build("b")  # warm: the worker has run the builder once
        builderid = await master.data.updates.find_builder_id("b")

        pass_task: list[asyncio.Task[Any] | None] = [None]
        counting = [False]
        seen: list[str] = []

        def on_statement(sql: str) -> None:
            if not counting[0] or asyncio.current_task() is pass_task[0]:
                return
            if re.search(r"\bmasters\b", sql):  # the heartbeat
                return
            seen.append(sql)

        distribute = brd.distribute

        async def marked() -> None:
            pass_task[0] = asyncio.current_task()
            try:
                await distribute()
            finally:
                pass_task[0] = None

        brd.distribute = marked  # type: ignore[method-assign]
        per_build: list[list[str]] = []
        try:
            with sqlite_statements(master, on_statement):
                for _ in range(BUILDS):
                    async with master.mq.subscribe(("buildsets", None, "complete")) as done:
                        seen.clear()
                        counting[0] = True
                        bsid, _brids = await add_plain_buildset(master.data.updates, builderid)
                        async with asyncio.timeout(60):
                            while (await done.get())[0][1] != str(bsid):
                                pass
                        counting[0] = False
                        per_build.append(list(seen))
        finally:
            counting[0] = False
            brd.distribute = distribute  # type: ignore[method-assign]

        # the builds succeeded
        builds = await master.db.builds.get_builds(builderid=builderid)
        assert [b.results for b in builds[-BUILDS:]] == [0] * BUILDS

    # the fewest of the builds: a heartbeat or a poll only ever adds to one build's count
    fewest = min(per_build, key=len)
    listing = "\n".join(_one_line(s) for s in fewest)
    transactions = sum(1 for s in fewest if s.startswith("BEGIN"))
    assert (len(fewest), transactions) == (STATEMENTS, TRANSACTIONS), listing

"""A small history written through the real write path (Updates), for the read tests.

Master m1 runs builders b1 and b2; worker w1 serves b1 (connected), w2 serves b2. A change on
branch main makes a stamp; buildset 1 asks b1 and b2, buildset 2 asks b1 again. Builds:
b1 #1 SUCCESS (two steps, logs), b1 #2 FAILURE, b2 #1 still running.
"""

from __future__ import annotations

import dataclasses

from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.model.logs import LogType
from buildyard.master.model.results import Results
from buildyard.testing.clock import FakeClock

STDIO = "hrunning make\nocompiling\neoops: warning\nodone\n"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Rows:
    masterid: int
    b1: int
    b2: int
    w1: int
    w2: int
    changeid: int
    ssid: int
    bsid1: int
    bsid2: int
    brids: tuple[int, int, int]
    build_ok: int
    build_bad: int
    build_running: int
    compile_step: int
    test_step: int
    stdio_log: int
    summary_log: int
    schedulerid: int
    changesourceid: int


async def write_rows(updates: Updates, database: Database, clock: FakeClock) -> Rows:
    masterid = await updates.find_master_id("host:/m1")
    await updates.master_active(name="host:/m1", masterid=masterid)
    ids = await updates.update_builder_list(masterid=masterid, builder_names=["b1", "b2"])
    b1, b2 = ids["b1"], ids["b2"]
    workers = await updates.configure_workers(
        masterid=masterid, builders_of={"w1": [b1], "w2": [b2]}
    )
    w1, w2 = workers["w1"], workers["w2"]
    await updates.worker_connected(workerid=w1, masterid=masterid, workerinfo={"host": "h1"})
    changeid = await updates.add_change(
        author="alice", comments="fix", revision="abc", branch="main", repository="r", project="p"
    )
    change = await database.changes.get_change(changeid)
    assert change is not None
    ssid = change.sourcestampid
    bs1 = await updates.add_buildset(
        scheduler="sch",
        sourcestamps=[ssid],
        reason="first",
        properties={"owner": ("me", "Force"), "branch": ("main", "Scheduler")},
        builderids=[b1, b2],
    )
    clock.advance(10)
    bs2 = await updates.add_buildset(
        scheduler="sch", sourcestamps=[ssid], reason="second", properties={}, builderids=[b1]
    )
    r1, r2, r3 = bs1.brids[b1], bs1.brids[b2], bs2.brids[b1]
    assert await updates.claim_buildrequests([r1, r2, r3], masterid=masterid)

    clock.advance(10)
    build_ok, _ = await updates.add_build(
        builderid=b1, buildrequestid=r1, workerid=w1, masterid=masterid
    )
    await updates.set_build_properties(
        build_ok, {"branch": ("main", "Build"), "workername": ("w1", "Worker")}
    )
    compile_step, _, _ = await updates.add_step(build_ok, "compile")
    await updates.start_step(compile_step)
    stdio_log = await updates.add_log(compile_step, "stdio", LogType.STDIO)
    await updates.append_log(stdio_log, STDIO)
    await updates.finish_log(stdio_log)
    summary_log = await updates.add_log(compile_step, "build summary", LogType.TEXT)
    await updates.append_log(summary_log, "".join(f"line {i}\n" for i in range(5)))
    await updates.finish_step(compile_step, Results.SUCCESS)
    test_step, _, _ = await updates.add_step(build_ok, "test")
    await updates.add_step_url(test_step, "report", "http://x/report")
    await updates.finish_step(test_step, Results.WARNINGS, hidden=True)
    await updates.finish_build(build_ok, Results.SUCCESS)
    await updates.complete_buildrequests([r1], Results.SUCCESS)

    clock.advance(10)
    build_bad, _ = await updates.add_build(
        builderid=b1, buildrequestid=r3, workerid=w1, masterid=masterid
    )
    await updates.finish_build(build_bad, Results.FAILURE)
    await updates.complete_buildrequests([r3], Results.FAILURE)

    clock.advance(10)
    build_running, _ = await updates.add_build(
        builderid=b2, buildrequestid=r2, workerid=w2, masterid=masterid
    )

    schedulerid = await updates.find_scheduler_id("sch")
    assert await updates.claim_scheduler(schedulerid, masterid=masterid)
    changesourceid = await updates.find_changesource_id("poller")
    return Rows(
        masterid=masterid,
        b1=b1,
        b2=b2,
        w1=w1,
        w2=w2,
        changeid=changeid,
        ssid=ssid,
        bsid1=bs1.bsid,
        bsid2=bs2.bsid,
        brids=(r1, r2, r3),
        build_ok=build_ok,
        build_bad=build_bad,
        build_running=build_running,
        compile_step=compile_step,
        test_step=test_step,
        stdio_log=stdio_log,
        summary_log=summary_log,
        schedulerid=schedulerid,
        changesourceid=changesourceid,
    )

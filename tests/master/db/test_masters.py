"""The masters connector on both backends (the seed's Masters connector, behaviour by behaviour)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db.base import inserted_id
from buildyard.master.db.connector import Database
from buildyard.master.db.hashes import name_hash
from buildyard.master.db.masters import LOST_BUILD_STATE
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows


async def test_find_master_id_adds_new_master_inactive(
    database: Database, clock: FakeClock
) -> None:
    mid = await database.masters.find_master_id("host:/srv/a")
    master = await database.masters.get_master(mid)
    assert master is not None
    assert (master.name, master.active, master.last_active) == (
        "host:/srv/a",
        False,
        int(clock.now()),
    )


async def test_find_master_id_is_stable_and_distinct(database: Database) -> None:
    a = await database.masters.find_master_id("host:/srv/a")
    b = await database.masters.find_master_id("host:/srv/b")
    assert a != b
    assert await database.masters.find_master_id("host:/srv/a") == a
    assert len(await database.masters.get_masters()) == 2


async def test_set_master_state_reports_changes_and_updates_last_active(
    database: Database, clock: FakeClock
) -> None:
    mid = await database.masters.find_master_id("m")
    clock.advance(30)
    assert await database.masters.set_master_state(mid, active=True) is True
    assert await database.masters.set_master_state(mid, active=True) is False
    master = await database.masters.get_master(mid)
    assert master is not None and master.active and master.last_active == int(clock.now())
    clock.advance(30)
    assert await database.masters.set_master_state(mid, active=False) is True
    assert await database.masters.set_master_state(mid, active=False) is False
    master = await database.masters.get_master(mid)
    # going inactive does not move last_active
    assert master is not None and not master.active and master.last_active == int(clock.now()) - 30


async def test_set_master_state_unknown_master_changes_nothing(database: Database) -> None:
    assert await database.masters.set_master_state(999, active=True) is False
    assert await database.masters.get_master(999) is None


async def _link_everything(database: Database, masterid: int) -> None:
    async with database.transaction() as c:
        bid = inserted_id(
            await c.execute(t.builders.insert().values(name="b", name_hash=name_hash("b")))
        )
        bmid = inserted_id(
            await c.execute(t.builder_masters.insert().values(builderid=bid, masterid=masterid))
        )
        wid = inserted_id(await c.execute(t.workers.insert().values(name="w", info="{}")))
        await c.execute(t.configured_workers.insert().values(buildermasterid=bmid, workerid=wid))
        sid = inserted_id(
            await c.execute(t.schedulers.insert().values(name="s", name_hash=name_hash("s")))
        )
        await c.execute(t.scheduler_masters.insert().values(schedulerid=sid, masterid=masterid))
        cid = inserted_id(
            await c.execute(t.changesources.insert().values(name="c", name_hash=name_hash("c")))
        )
        await c.execute(
            t.changesource_masters.insert().values(changesourceid=cid, masterid=masterid)
        )


async def _count(database: Database, table: sa.Table) -> int:
    async with database.reading() as c:
        return int((await c.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def test_inactive_deletes_links(database: Database) -> None:
    mid = await database.masters.find_master_id("m")
    await database.masters.set_master_state(mid, active=True)
    await _link_everything(database, mid)
    for table in (
        t.builder_masters,
        t.configured_workers,
        t.scheduler_masters,
        t.changesource_masters,
    ):
        assert await _count(database, table) == 1
    await database.masters.set_master_state(mid, active=False)
    for table in (
        t.builder_masters,
        t.configured_workers,
        t.scheduler_masters,
        t.changesource_masters,
    ):
        assert await _count(database, table) == 0, table.name
    # the things themselves stay; only the links to this master go
    assert await _count(database, t.builders) == 1
    assert await _count(database, t.schedulers) == 1


async def test_inactive_leaves_other_masters_links(database: Database) -> None:
    a = await database.masters.find_master_id("a")
    b = await database.masters.find_master_id("b")
    await _link_everything(database, b)
    await database.masters.set_master_state(a, active=True)
    await database.masters.set_master_state(a, active=False)
    assert await _count(database, t.builder_masters) == 1
    assert await _count(database, t.scheduler_masters) == 1


async def test_get_masters_sorted_filtered_and_paged(database: Database, clock: FakeClock) -> None:
    ids = []
    for name in ("c", "a", "d", "b"):
        ids.append(await database.masters.find_master_id(name))
        clock.advance(1)
    await database.masters.set_master_state(ids[1], active=True)
    await database.masters.set_master_state(ids[3], active=True)
    names = [m.name for m in await database.masters.get_masters()]
    assert names == ["c", "a", "d", "b"]  # by id
    by_name = QueryOptions(order=("name",))
    assert [m.name for m in await database.masters.get_masters(by_name)] == ["a", "b", "c", "d"]
    desc_paged = QueryOptions(order=("-name",), limit=2, offset=1)
    assert [m.name for m in await database.masters.get_masters(desc_paged)] == ["c", "b"]
    active = QueryOptions(filters=(Filter(field="active", op=Op.EQ, values=(1,)),), order=("name",))
    assert [m.name for m in await database.masters.get_masters(active)] == ["a", "b"]
    assert await database.masters.count_masters(active) == 2


async def test_set_all_masters_active_long_ago(database: Database) -> None:
    a = await database.masters.find_master_id("a")
    b = await database.masters.find_master_id("b")
    await database.masters.set_master_state(b, active=True)
    await database.masters.set_all_masters_active_long_ago()
    for mid in (a, b):
        master = await database.masters.get_master(mid)
        assert master is not None and master.active and master.last_active == 0
    expired = await database.masters.find_expired(older_than=1)
    assert sorted(m.id for m in expired) == sorted([a, b])


async def test_find_master_id_concurrent_callers_agree(database: Database) -> None:
    import asyncio

    ids = await asyncio.gather(*(database.masters.find_master_id("same") for _ in range(8)))
    assert len(set(ids)) == 1
    assert len(await database.masters.get_masters()) == 1


async def test_mark_inactive_if_stale_loses_to_a_fresh_check_in(
    database: Database, clock: FakeClock
) -> None:
    mid = await database.masters.find_master_id("m")
    await database.masters.set_master_state(mid, active=True)
    clock.advance(100)
    cutoff = int(clock.now()) - 50
    # the master checks in after someone read it as stale, before they write
    await database.masters.set_master_state(mid, active=True)
    assert await database.masters.mark_inactive_if_stale(mid, older_than=cutoff) is False
    master = await database.masters.get_master(mid)
    assert master is not None and master.active
    clock.advance(100)
    assert await database.masters.mark_inactive_if_stale(mid, older_than=cutoff + 100) is True
    assert await database.masters.set_master_state(mid, active=True) is True  # it was inactive


async def test_in_memory_database_isolates_concurrent_transactions(clock: FakeClock) -> None:
    import asyncio

    from buildyard.master.db import migrate

    db = Database("sqlite://", clock=clock)
    try:
        await migrate.upgrade(db)
        async with db.reading() as snapshot:
            before = await db.masters.get_masters(conn=snapshot)
            ids = await asyncio.gather(*(db.masters.find_master_id(f"m{i}") for i in range(3)))
            assert await db.masters.get_masters(conn=snapshot) == before == []
        assert len(set(ids)) == 3
    finally:
        await db.close()


# ---------------------------------------------------------------------------------------------
# The cleanup of a master with a long history: what it finishes, and how it finds it


async def _fill_history(database: Database, *, finished: int) -> dict[str, Any]:
    """Master A with ``finished`` finished builds (each with its complete buildset, request and
    A's claim), two running builds, and one finished build whose request is complete but whose
    buildset is not (A died between the two); master B with one running build. Ids are
    explicit, in one transaction of bulk inserts."""
    a = await _rows.add_master(database, "host:/srv/a")
    b = await _rows.add_master(database, "host:/srv/b")
    builderid = await _rows.add_builder(database)
    workerid = await _rows.add_worker(database)
    # (id, master, buildset complete, request complete, build finished)
    rows = [(i, a, 1, 1, True) for i in range(1, finished + 1)]
    n = finished
    rows += [(n + 1, a, 0, 0, False), (n + 2, a, 0, 0, False)]  # running on A
    rows += [(n + 3, a, 0, 1, True)]  # built, its buildset left open
    rows += [(n + 4, b, 0, 0, False)]  # running on B
    async with database.transaction() as c:
        await c.execute(
            t.buildsets.insert(),
            [
                {"id": i, "submitted_at": 0, "complete": bs, "results": -1}
                for i, _, bs, _, _ in rows
            ],
        )
        await c.execute(
            t.buildrequests.insert(),
            [
                {
                    "id": i,
                    "buildsetid": i,
                    "builderid": builderid,
                    "submitted_at": 0,
                    "complete": br,
                    "results": 0 if br else -1,
                }
                for i, _, _, br, _ in rows
            ],
        )
        await c.execute(
            t.buildrequest_claims.insert(),
            [{"brid": i, "masterid": m, "claimed_at": 0} for i, m, _, _, _ in rows],
        )
        await c.execute(
            t.builds.insert(),
            [
                {
                    "id": i,
                    "number": i,
                    "builderid": builderid,
                    "buildrequestid": i,
                    "workerid": workerid,
                    "masterid": m,
                    "started_at": 0,
                    "complete_at": 10 if done else None,
                    "locks_duration_s": 0,
                    "state_string": "done" if done else "building",
                    "results": 0 if done else None,
                }
                for i, m, _, _, done in rows
            ],
        )
    return {"a": a, "b": b, "builderid": builderid, "n": n}


async def test_cleanup_of_a_master_with_a_long_history_finishes_exactly_its_running_builds(
    database: Database,
) -> None:
    h = await _fill_history(database, finished=500)
    a, n, builderid = h["a"], h["n"], h["builderid"]
    cleanup = await database.masters.deactivation_cleanup(a)
    assert cleanup.builds == ((n + 1, builderid, n + 1), (n + 2, builderid, n + 2))
    assert cleanup.unclaimed == ((n + 1, builderid, n + 1), (n + 2, builderid, n + 2))
    assert cleanup.completed == ()
    # the open buildsets with a request A claimed: both running ones, and the one left open
    assert cleanup.buildsets == (n + 1, n + 2, n + 3)
    async with database.reading() as c:
        lost = (
            await c.execute(
                sa.select(t.builds.c.id)
                .where(t.builds.c.state_string == LOST_BUILD_STATE)
                .order_by(t.builds.c.id)
            )
        ).scalars()
        assert list(lost) == [n + 1, n + 2]
        running = (
            await c.execute(sa.select(t.builds.c.id).where(t.builds.c.complete_at.is_(None)))
        ).scalars()
        assert list(running) == [n + 4]  # B's
        # A's claims on complete requests stay (they say who built them); B's claim too
        claims = (
            await c.execute(sa.select(sa.func.count()).select_from(t.buildrequest_claims))
        ).scalar_one()
        assert claims == n + 2


async def test_cleanup_takes_a_request_whose_complete_is_null_as_incomplete(
    database: Database,
) -> None:
    """The column allows NULL (an adopted database may hold one): incomplete, as everywhere
    else, so the dead master's claim on it goes."""
    h = await _fill_history(database, finished=3)
    a, n, builderid = h["a"], h["n"], h["builderid"]
    async with database.transaction() as c:
        await c.execute(
            t.buildrequests.update().where(t.buildrequests.c.id == n + 2).values(complete=None)
        )
    cleanup = await database.masters.deactivation_cleanup(a)
    assert cleanup.unclaimed == ((n + 1, builderid, n + 1), (n + 2, builderid, n + 2))


_OPEN_WORK_TABLES = ("builds", "buildrequests", "buildrequest_claims", "buildsets")


async def test_cleanup_reads_a_long_history_through_indexes_of_the_open_work(
    database: Database,
) -> None:
    """Every statement of the cleanup, explained on the database: the running builds come from
    the partial index builds_running_masterid (not builds_masterid, which holds every build the
    master ran), the claims from the incomplete requests and buildsets (not the master's claims
    by masterid, kept after completion), and no statement scans a table of the history."""
    h = await _fill_history(database, finished=5000)
    postgres = database.backend == "postgresql"
    if postgres:  # the planner's statistics, as autovacuum would have them on a real database
        async with database.transaction() as c:
            await c.execute(sa.text("ANALYZE"))
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            statements.append((statement, parameters))

    engine = database.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        cleanup = await database.masters.deactivation_cleanup(h["a"])
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert len(cleanup.builds) == 2
    plans: dict[str, str] = {}
    async with database.reading() as c:
        for statement, parameters in statements:
            explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
            rows = await c.exec_driver_sql(explain + statement, parameters)
            plans[" ".join(statement.split())] = "\n".join(str(r[-1]) for r in rows)
    running = [p for s, p in plans.items() if "builds.complete_at IS NULL" in s]
    assert len(running) == 1 and "builds_running_masterid" in running[0], running
    everything = "\n".join(plans.values())
    assert "ix_buildrequest_claims_masterid" not in everything, plans
    for table in _OPEN_WORK_TABLES:
        for line in everything.splitlines():
            if postgres:
                scans = f"Seq Scan on {table} " in f"{line} "
            else:  # "SCAN t" or "SCAN t USING [COVERING] INDEX i": every row of t, or of i
                scans = f"{line.strip()} ".startswith(f"SCAN {table} ")
            assert not scans, (table, plans)

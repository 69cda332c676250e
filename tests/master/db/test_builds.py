"""The builds connector on both backends: numbering (with races), reads, properties, data."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db.builds import BuildsRepository
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import DbError
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.master.db.sourcestamps import SourcestampsRepository
from buildyard.master.model.results import Results
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows


def _repo(database: Database, clock: FakeClock) -> BuildsRepository:
    return BuildsRepository(engine=database.engine, clock=clock)


async def _setup(database: Database) -> tuple[int, int, int, int]:
    """(masterid, builderid, brid, workerid)"""
    masterid = await _rows.add_master(database)
    builderid = await _rows.add_builder(database)
    _bsid, brid = await _rows.add_request(database, builderid)
    return masterid, builderid, brid, await _rows.add_worker(database)


async def test_add_build_numbers_per_builder(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    masterid, b1, brid, workerid = await _setup(database)
    b2 = await _rows.add_builder(database, "other")

    async def start(builderid: int) -> tuple[int, int]:
        return await repo.add_build(
            builderid=builderid,
            buildrequestid=brid,
            workerid=workerid,
            masterid=masterid,
            state_string="starting",
        )

    first = await start(b1)
    second = await start(b1)
    elsewhere = await start(b2)
    assert [first[1], second[1], elsewhere[1]] == [1, 2, 1]
    build = await repo.get_build(first[0])
    assert build is not None
    assert (build.id, build.number, build.builderid, build.buildrequestid) == (
        first[0],
        1,
        b1,
        brid,
    )
    assert (build.workerid, build.masterid, build.started_at, build.complete_at) == (
        workerid,
        masterid,
        int(clock.now()),
        None,
    )
    assert (build.locks_duration_s, build.state_string, build.results) == (0, "starting", None)
    by_number = await repo.get_build_by_number(b1, 2)
    assert by_number is not None and by_number.id == second[0]
    assert await repo.get_build_by_number(b2, 2) is None
    assert await repo.get_build(9999) is None


async def test_add_build_continues_after_max(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    masterid, builderid, brid, _ = await _setup(database)
    await _rows.add_build(
        database, builderid=builderid, buildrequestid=brid, masterid=masterid, number=41
    )
    _, number = await repo.add_build(
        builderid=builderid, buildrequestid=brid, workerid=None, masterid=masterid, state_string=""
    )
    assert number == 42


async def test_add_build_retries_when_another_master_took_the_number(
    database: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _repo(database, clock)
    masterid, builderid, brid, _ = await _setup(database)
    other = await _rows.add_master(database, "other")
    await _rows.add_build(
        database, builderid=builderid, buildrequestid=brid, masterid=other, number=1
    )
    real = repo._next_number
    stale = [1]  # as if read before the other master inserted build 1

    async def next_number(c: object, bid: int) -> int:
        return stale.pop() if stale else await real(c, bid)  # type: ignore[arg-type]

    monkeypatch.setattr(repo, "_next_number", next_number)
    buildid, number = await repo.add_build(
        builderid=builderid, buildrequestid=brid, workerid=None, masterid=masterid, state_string=""
    )
    assert number == 2 and not stale
    build = await repo.get_build(buildid)
    assert build is not None and (build.number, build.masterid) == (2, masterid)


async def test_concurrent_add_build_gets_distinct_numbers(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    masterid, builderid, brid, _ = await _setup(database)
    results = await asyncio.gather(
        *(
            repo.add_build(
                builderid=builderid,
                buildrequestid=brid,
                workerid=None,
                masterid=masterid,
                state_string="",
            )
            for _ in range(6)
        )
    )
    assert sorted(number for _id, number in results) == [1, 2, 3, 4, 5, 6]


async def test_add_build_for_unknown_builder_fails_clearly(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    masterid, _builderid, brid, _ = await _setup(database)
    with pytest.raises(DbError, match="builder 9999"):
        await repo.add_build(
            builderid=9999, buildrequestid=brid, workerid=None, masterid=masterid, state_string=""
        )


async def test_state_finish_locks_and_get_builds(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    masterid, builderid, brid, workerid = await _setup(database)
    _bsid, brid2 = await _rows.add_request(database, builderid)
    a, _ = await repo.add_build(
        builderid=builderid,
        buildrequestid=brid,
        workerid=workerid,
        masterid=masterid,
        state_string="s",
    )
    b, _ = await repo.add_build(
        builderid=builderid,
        buildrequestid=brid2,
        workerid=None,
        masterid=masterid,
        state_string="s",
    )
    await repo.set_build_state_string(a, "compiling")
    await repo.add_build_locks_duration(a, 3)
    await repo.add_build_locks_duration(a, 4)
    clock.advance(30)
    await repo.finish_build(a, Results.WARNINGS)
    build = await repo.get_build(a)
    assert build is not None
    assert (build.state_string, build.locks_duration_s) == ("compiling", 7)
    assert (build.results, build.complete_at) == (Results.WARNINGS, int(clock.now()))
    assert [x.id for x in await repo.get_builds()] == [a, b]
    assert [x.id for x in await repo.get_builds(complete=True)] == [a]
    assert [x.id for x in await repo.get_builds(complete=False)] == [b]
    assert [x.id for x in await repo.get_builds(workerid=workerid)] == [a]
    assert [x.id for x in await repo.get_builds(buildrequestid=brid2)] == [b]
    assert [x.id for x in await repo.get_builds(builderid=builderid + 1)] == []
    newest = QueryOptions(order=("-number",), limit=1)
    assert [x.id for x in await repo.get_builds(builderid=builderid, options=newest)] == [b]
    warned = QueryOptions(filters=(Filter(field="results", op=Op.EQ, values=(1,)),))
    assert [x.id for x in await repo.get_builds(options=warned)] == [a]


async def test_running_builds_of_several_workers(database: Database, clock: FakeClock) -> None:
    # on SQLite, the running builds of workers with most of the builds are read from the whole
    # table (BuildsRepository._columns), of the others through builds_workerid: same answers
    repo = _repo(database, clock)
    masterid, builderid, brid, w1 = await _setup(database)
    w2, w3 = await _rows.add_worker(database, "w2"), await _rows.add_worker(database, "w3")
    running: list[tuple[int, int]] = []  # (workerid, buildid)
    for i in range(30):
        workerid = w1 if i < 20 else w2 if i < 28 else w3
        buildid, _ = await repo.add_build(
            builderid=builderid,
            buildrequestid=brid,
            workerid=workerid,
            masterid=masterid,
            state_string="s",
        )
        if i % 3:
            await repo.finish_build(buildid, Results.SUCCESS)
        else:
            running.append((workerid, buildid))
    for workers in [(w1, w2), (w2, w3), (w1, w2, w3), (w3, None)]:
        options = QueryOptions(
            filters=(Filter(field="workerid", op=Op.EQ, values=workers),),
            order=("-workerid", "-buildid"),
            limit=50,
        )
        expected = [b for _w, b in sorted((r for r in running if r[0] in workers), reverse=True)]
        got = await repo.get_builds(complete=False, options=options)
        assert [b.id for b in got] == expected
        assert await repo.count_builds(complete=False, options=options) == len(expected)


async def test_prev_successful_build_matches_stamps(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    masterid = await _rows.add_master(database)
    builderid = await _rows.add_builder(database)
    main = await _rows.add_sourcestamp(database, branch="main", revision="1")
    main2 = await _rows.add_sourcestamp(database, branch="main", revision="2")
    dev = await _rows.add_sourcestamp(database, branch="dev", revision="3")

    async def build(number: int, ssid: int, results: Results | None, complete_at: int) -> int:
        _bsid, brid = await _rows.add_request(database, builderid, ssids=(ssid,))
        return await _rows.add_build(
            database,
            builderid=builderid,
            buildrequestid=brid,
            masterid=masterid,
            number=number,
            results=None if results is None else int(results),
            complete_at=complete_at,
        )

    first = await build(1, main, Results.SUCCESS, 10)
    await build(2, dev, Results.SUCCESS, 20)
    await build(3, main, Results.FAILURE, 30)
    current = await build(4, main2, None, 40)
    stamps = await SourcestampsRepository(
        engine=database.engine, clock=clock
    ).get_sourcestamps_for_build(current)
    prev = await repo.get_prev_successful_build(builderid, 4, stamps)
    # same repository/branch/codebase set (revision does not matter), SUCCESS only
    assert prev is not None and prev.id == first
    assert await repo.get_prev_successful_build(builderid, 1, stamps) is None


async def test_build_properties(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    masterid, builderid, brid, _ = await _setup(database)
    buildid, _ = await repo.add_build(
        builderid=builderid, buildrequestid=brid, workerid=None, masterid=masterid, state_string=""
    )
    assert await repo.get_build_properties(buildid) == {}
    await repo.set_build_property(buildid, "got_revision", "abc", "Git")
    await repo.set_build_property(buildid, "n", {"a": [1, None]}, "Build")
    await repo.set_build_property(buildid, "got_revision", "def", "Git2")
    assert await repo.get_build_properties(buildid) == {
        "got_revision": ("def", "Git2"),
        "n": ({"a": [1, None]}, "Build"),
    }
    async with database.reading() as c:
        rows = (
            await c.execute(
                sa.select(t.build_properties.c.name, t.build_properties.c.value).order_by(
                    t.build_properties.c.name
                )
            )
        ).all()
    # one row per name, the value as JSON (docs/database.md, "Conventions")
    assert [tuple(r) for r in rows] == [("got_revision", '"def"'), ("n", '{"a": [1, null]}')]

    # several at once: replaced and added, still one row per name
    await repo.set_build_properties(buildid, {"n": (2, "Step"), "new": ([True], "Step")})
    assert await repo.get_build_properties(buildid) == {
        "got_revision": ("def", "Git2"),
        "n": (2, "Step"),
        "new": ([True], "Step"),
    }
    async with database.reading() as c:
        count = (
            await c.execute(sa.select(sa.func.count()).select_from(t.build_properties))
        ).scalar()
    assert count == 3


async def test_build_data(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    masterid, builderid, brid, _ = await _setup(database)
    buildid, _ = await repo.add_build(
        builderid=builderid, buildrequestid=brid, workerid=None, masterid=masterid, state_string=""
    )
    assert await repo.get_build_data(buildid, "x") is None
    await repo.add_build_data(buildid, "x", b"\x00\x01binary", "step")
    await repo.add_build_data(buildid, "a", b"", "step")
    await repo.add_build_data(buildid, "x", b"replaced", "other")
    data = await repo.get_build_data(buildid, "x")
    assert data is not None
    assert (data.value, data.length, data.source) == (b"replaced", 8, "other")
    listed = await repo.get_all_build_data(buildid)
    assert [(d.name, d.length, d.value) for d in listed] == [("a", 0, None), ("x", 8, None)]
    with pytest.raises(DbError):
        await repo.add_build_data(9999, "x", b"v", "s")


async def test_delete_old_build_data(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    masterid, builderid, brid, _ = await _setup(database)
    ids = []
    for _ in range(3):
        buildid, _n = await repo.add_build(
            builderid=builderid,
            buildrequestid=brid,
            workerid=None,
            masterid=masterid,
            state_string="",
        )
        for name in ("a", "b", "c"):
            await repo.add_build_data(buildid, name, b"v", "step")
        ids.append(buildid)
    await repo.finish_build(
        ids[0], results=Results.SUCCESS
    )  # completes now: old once the clock moves
    clock.advance(100)
    await repo.finish_build(
        ids[1], results=Results.SUCCESS
    )  # completes later; ids[2] is still running
    cutoff = int(clock.now()) - 50
    assert await repo.delete_old_build_data(cutoff, batch=2) == 3  # in two transactions
    assert await repo.get_all_build_data(ids[0]) == []
    for kept in ids[1:]:
        assert [d.name for d in await repo.get_all_build_data(kept)] == ["a", "b", "c"]
    assert await repo.delete_old_build_data(cutoff) == 0

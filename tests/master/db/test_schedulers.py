"""The schedulers connector on both backends: identity, ownership, enabling, change queue."""

from __future__ import annotations

import asyncio
import itertools

import pytest
import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db.base import inserted_id
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import AlreadyClaimed, DbError
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.master.db.schedulers import SchedulersRepository
from buildyard.master.model.schedulers import Scheduler
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows

# each change gets its own stamp
_REVISIONS = itertools.count()


def _repo(database: Database, clock: FakeClock) -> SchedulersRepository:
    return SchedulersRepository(engine=database.engine, clock=clock)


async def _add_change(
    database: Database,
    *,
    branch: str | None = "main",
    repository: str = "r",
    project: str = "p",
    codebase: str = "",
) -> int:
    ssid = await _rows.add_sourcestamp(
        database,
        branch=branch,
        revision=f"rev{next(_REVISIONS)}",
        repository=repository,
        codebase=codebase,
    )
    async with database.transaction() as c:
        return inserted_id(
            await c.execute(
                t.changes.insert().values(
                    author="a",
                    comments="c",
                    branch=branch,
                    when_timestamp=0,
                    repository=repository,
                    project=project,
                    codebase=codebase,
                    sourcestampid=ssid,
                )
            )
        )


async def test_find_scheduler_id_creates_enabled_unowned(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    sid = await repo.find_scheduler_id("nightly")
    assert await repo.find_scheduler_id("nightly") == sid
    assert await repo.find_scheduler_id("other") != sid
    assert await repo.get_scheduler(sid) == Scheduler(
        id=sid, name="nightly", enabled=True, masterid=None
    )
    assert await repo.get_scheduler(sid + 100) is None
    ids = await asyncio.gather(*(repo.find_scheduler_id("raced") for _ in range(8)))
    assert len(set(ids)) == 1


async def test_set_scheduler_enabled(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    sid = await repo.find_scheduler_id("s")
    await repo.set_scheduler_enabled(sid, False)
    scheduler = await repo.get_scheduler(sid)
    assert scheduler is not None and scheduler.enabled is False
    opts = QueryOptions(filters=(Filter(field="enabled", op=Op.EQ, values=(False,)),))
    assert [s.id for s in await repo.get_schedulers(options=opts)] == [sid]
    await repo.set_scheduler_enabled(sid, True)
    scheduler = await repo.get_scheduler(sid)
    assert scheduler is not None and scheduler.enabled is True
    assert await repo.get_schedulers(options=opts) == []


async def test_claim_is_exclusive_and_reclaim_by_owner_is_fine(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    sid = await repo.find_scheduler_id("s")
    m1 = await _rows.add_master(database, "m1")
    m2 = await _rows.add_master(database, "m2")
    await repo.set_scheduler_master(sid, m1)
    await repo.set_scheduler_master(sid, m1)
    with pytest.raises(AlreadyClaimed, match=f"master {m1}"):
        await repo.set_scheduler_master(sid, m2)
    scheduler = await repo.get_scheduler(sid)
    assert scheduler is not None and scheduler.masterid == m1
    await repo.set_scheduler_master(sid, None)
    await repo.set_scheduler_master(sid, None)
    scheduler = await repo.get_scheduler(sid)
    assert scheduler is not None and scheduler.masterid is None
    await repo.set_scheduler_master(sid, m2)
    scheduler = await repo.get_scheduler(sid)
    assert scheduler is not None and scheduler.masterid == m2


async def test_claim_inside_caller_transaction_survives_a_lost_claim(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    s1, s2 = await repo.find_scheduler_id("s1"), await repo.find_scheduler_id("s2")
    m1 = await _rows.add_master(database, "m1")
    m2 = await _rows.add_master(database, "m2")
    await repo.set_scheduler_master(s1, m1)
    async with database.transaction() as c:
        with pytest.raises(AlreadyClaimed):
            await repo.set_scheduler_master(s1, m2, conn=c)
        # only the savepoint was rolled back: the transaction goes on
        await repo.set_scheduler_master(s2, m2, conn=c)
    owners = {s.id: s.masterid for s in await repo.get_schedulers()}
    assert owners == {s1: m1, s2: m2}


async def test_concurrent_claims_have_one_winner(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    sid = await repo.find_scheduler_id("s")
    masters = [await _rows.add_master(database, f"m{i}") for i in range(6)]
    outcomes = await asyncio.gather(
        *(repo.set_scheduler_master(sid, m) for m in masters), return_exceptions=True
    )
    winners = [m for m, o in zip(masters, outcomes, strict=True) if o is None]
    assert len(winners) == 1
    assert all(isinstance(o, AlreadyClaimed) for o in outcomes if o is not None)
    scheduler = await repo.get_scheduler(sid)
    assert scheduler is not None and scheduler.masterid == winners[0]


async def test_claim_of_unknown_scheduler_is_a_db_error(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    mid = await _rows.add_master(database)
    with pytest.raises(DbError, match="scheduler_masters: row refused") as raised:
        await repo.set_scheduler_master(999, mid)
    assert not isinstance(raised.value, AlreadyClaimed)


async def test_get_schedulers_active_and_master_filters(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    a, b, c = [await repo.find_scheduler_id(n) for n in ("a", "b", "c")]
    m1 = await _rows.add_master(database, "m1")
    m2 = await _rows.add_master(database, "m2")
    await repo.set_scheduler_master(a, m1)
    await repo.set_scheduler_master(c, m2)

    def ids(found: list[Scheduler]) -> list[int]:
        return [s.id for s in found]

    assert [(s.id, s.masterid) for s in await repo.get_schedulers()] == [
        (a, m1),
        (b, None),
        (c, m2),
    ]
    assert ids(await repo.get_schedulers(active=True)) == [a, c]
    assert ids(await repo.get_schedulers(active=False)) == [b]
    assert ids(await repo.get_schedulers(masterid=m2)) == [c]
    assert ids(await repo.get_schedulers(masterid=m2, active=True)) == [c]
    assert await repo.get_schedulers(masterid=m2, active=False) == []
    by_owner = QueryOptions(filters=(Filter(field="masterid", op=Op.EQ, values=(m1,)),))
    assert ids(await repo.get_schedulers(options=by_owner)) == [a]
    paged = QueryOptions(order=("-name",), limit=2)
    assert ids(await repo.get_schedulers(options=paged)) == [c, b]
    assert await repo.count_schedulers(active=True) == 2
    assert await repo.count_schedulers(options=paged) == 3


async def test_classify_reclassify_and_read(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    sid = await repo.find_scheduler_id("s")
    other = await repo.find_scheduler_id("other")
    c1, c2, c3 = [await _add_change(database) for _ in range(3)]
    await repo.classify_changes(sid, {c3: True, c1: False})
    await repo.classify_changes(other, {c2: True})
    assert await repo.get_change_classifications(sid) == {c1: False, c3: True}
    assert list(await repo.get_change_classifications(sid)) == [c1, c3]
    await repo.classify_changes(sid, {c1: True, c2: False})
    assert await repo.get_change_classifications(sid) == {c1: True, c2: False, c3: True}
    async with database.reading() as c:
        rows = await c.execute(sa.select(sa.func.count()).select_from(t.scheduler_changes))
        assert rows.scalar_one() == 4
    assert await repo.get_change_classifications(other) == {c2: True}


async def test_concurrent_classification_of_the_same_changes(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    sid = await repo.find_scheduler_id("s")
    changes = [await _add_change(database) for _ in range(3)]
    await asyncio.gather(
        *(repo.classify_changes(sid, dict.fromkeys(changes, True)) for _ in range(5))
    )
    assert await repo.get_change_classifications(sid) == dict.fromkeys(changes, True)


async def test_flush_change_classifications(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    sid = await repo.find_scheduler_id("s")
    other = await repo.find_scheduler_id("other")
    c1, c2, c3 = [await _add_change(database) for _ in range(3)]
    await repo.classify_changes(sid, {c1: True, c2: False, c3: True})
    await repo.classify_changes(other, {c1: True})
    await repo.flush_change_classifications(sid, less_than=c3)
    assert await repo.get_change_classifications(sid) == {c3: True}
    await repo.flush_change_classifications(sid)
    assert await repo.get_change_classifications(sid) == {}
    assert await repo.get_change_classifications(other) == {c1: True}


async def test_change_classifications_filtered_by_change_fields(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    sid = await repo.find_scheduler_id("s")
    main = await _add_change(database, branch="main")
    default = await _add_change(database, branch=None)
    elsewhere = await _add_change(
        database, branch="main", repository="r2", project="q", codebase="cb"
    )
    await repo.classify_changes(sid, {main: True, default: True, elsewhere: False})
    assert await repo.get_change_classifications(sid, branch="main") == {
        main: True,
        elsewhere: False,
    }
    # None is the default branch, not "any branch"
    assert await repo.get_change_classifications(sid, branch=None) == {default: True}
    assert await repo.get_change_classifications(sid, repository="r2") == {elsewhere: False}
    assert await repo.get_change_classifications(sid, project="p") == {main: True, default: True}
    assert await repo.get_change_classifications(sid, codebase="cb", branch="main") == {
        elsewhere: False
    }
    assert await repo.get_change_classifications(sid, codebase="nope") == {}

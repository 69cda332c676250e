"""The build requests connector on both backends: reading, claiming races, completion."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db.buildrequests import BuildRequestsRepository
from buildyard.master.db.buildsets import BuildsetsRepository
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import AlreadyClaimed, NotClaimed
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.master.model.results import Results
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows


def _repo(database: Database, clock: FakeClock) -> BuildRequestsRepository:
    return BuildRequestsRepository(engine=database.engine, clock=clock)


async def _buildset(
    database: Database,
    clock: FakeClock,
    builderids: list[int],
    *,
    branch: str = "main",
    repository: str = "https://git/r",
) -> tuple[int, dict[int, int]]:
    return await BuildsetsRepository(engine=database.engine, clock=clock).add_buildset(
        sourcestamps=[
            {
                "branch": branch,
                "revision": None,
                "repository": repository,
                "project": "",
                "codebase": "",
            }
        ],
        reason="r",
        properties={},
        builderids=builderids,
        waited_for=False,
        priority=3,
    )


async def _claims(database: Database) -> list[tuple[int, int]]:
    async with database.reading() as c:
        rows = await c.execute(
            sa.select(t.buildrequest_claims.c.brid, t.buildrequest_claims.c.masterid).order_by(
                t.buildrequest_claims.c.brid
            )
        )
        return [(r.brid, r.masterid) for r in rows]


async def test_get_buildrequest_fields(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    builderid = await _rows.add_builder(database, "linux")
    bsid, brids = await _buildset(database, clock, [builderid])
    br = await repo.get_buildrequest(brids[builderid])
    assert br is not None
    assert (br.id, br.buildsetid, br.builderid, br.buildername, br.priority) == (
        brids[builderid],
        bsid,
        builderid,
        "linux",
        3,
    )
    assert (br.submitted_at, br.complete, br.complete_at, br.results, br.waited_for) == (
        int(clock.now()),
        False,
        None,
        None,
        False,
    )
    assert (br.claimed, br.claimed_at, br.claimed_by_masterid) == (False, None, None)
    assert await repo.get_buildrequest(9999) is None


async def test_claim_then_read_and_unclaim(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    m1 = await _rows.add_master(database, "m1")
    m2 = await _rows.add_master(database, "m2")
    builderid = await _rows.add_builder(database)
    _, a = await _buildset(database, clock, [builderid])
    _, b = await _buildset(database, clock, [builderid])
    _, c = await _buildset(database, clock, [builderid])
    ra, rb, rc = a[builderid], b[builderid], c[builderid]
    clock.advance(5)
    await repo.claim_buildrequests([ra, rb], m1)
    await repo.claim_buildrequests([rc], m2, claimed_at=77)
    br = await repo.get_buildrequest(ra)
    assert br is not None
    assert (br.claimed, br.claimed_at, br.claimed_by_masterid) == (True, int(clock.now()), m1)
    mine = await repo.get_buildrequests(claimed=m1)
    assert [r.id for r in mine] == [ra, rb]
    other = await repo.get_buildrequests(claimed=m2)
    assert [(r.id, r.claimed_at) for r in other] == [(rc, 77)]
    assert [r.id for r in await repo.get_buildrequests(claimed=True)] == [ra, rb, rc]
    assert await repo.get_buildrequests(claimed=False) == []
    # unclaim only touches this master's claims
    assert await repo.unclaim_buildrequests([ra, rc], m1) == [ra]
    assert await _claims(database) == [(rb, m1), (rc, m2)]
    assert [r.id for r in await repo.get_buildrequests(claimed=False)] == [ra]


async def test_claim_race_exactly_one_master_wins_all(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    m1 = await _rows.add_master(database, "m1")
    m2 = await _rows.add_master(database, "m2")
    builderid = await _rows.add_builder(database)
    brids = [(await _buildset(database, clock, [builderid]))[1][builderid] for _ in range(3)]
    outcomes = await asyncio.gather(
        repo.claim_buildrequests(brids, m1),
        repo.claim_buildrequests(brids, m2),
        return_exceptions=True,
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["AlreadyClaimed", "NoneType"]
    winner = m1 if outcomes[0] is None else m2
    assert await _claims(database) == [(brid, winner) for brid in brids]


async def test_overlapping_claims_are_all_or_nothing(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    m1 = await _rows.add_master(database, "m1")
    m2 = await _rows.add_master(database, "m2")
    builderid = await _rows.add_builder(database)
    r1, r2, r3 = [(await _buildset(database, clock, [builderid]))[1][builderid] for _ in range(3)]
    outcomes = await asyncio.gather(
        repo.claim_buildrequests([r1, r2], m1),
        repo.claim_buildrequests([r3, r2], m2),
        return_exceptions=True,
    )
    assert sum(isinstance(o, AlreadyClaimed) for o in outcomes) == 1
    claims = await _claims(database)
    # never a partial claim: either m1 holds r1, r2 or m2 holds r2, r3
    assert claims in ([(r1, m1), (r2, m1)], [(r2, m2), (r3, m2)])


async def test_failed_claim_rolls_back_earlier_rows(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    m1 = await _rows.add_master(database, "m1")
    m2 = await _rows.add_master(database, "m2")
    builderid = await _rows.add_builder(database)
    r1, r2 = [(await _buildset(database, clock, [builderid]))[1][builderid] for _ in range(2)]
    await repo.claim_buildrequests([r2], m1)
    with pytest.raises(AlreadyClaimed):
        await repo.claim_buildrequests([r1, r2], m2)
    with pytest.raises(AlreadyClaimed):
        await repo.claim_buildrequests([r1, 9999], m2)  # unknown request
    assert await _claims(database) == [(r2, m1)]
    # inside a caller's transaction the failure leaves that transaction usable
    async with database.transaction() as c:
        with pytest.raises(AlreadyClaimed):
            await repo.claim_buildrequests([r1, r2], m2, conn=c)
        await repo.claim_buildrequests([r1], m2, conn=c)
    assert await _claims(database) == [(r1, m2), (r2, m1)]


async def test_unclaim_in_batches(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    m1 = await _rows.add_master(database, "m1")
    _, brids = await _buildset(
        database, clock, [await _rows.add_builder(database, f"b{i}") for i in range(250)]
    )
    ids = sorted(brids.values())
    await repo.claim_buildrequests(ids, m1)
    assert len(await _claims(database)) == 250
    assert await repo.unclaim_buildrequests(ids[:240], m1) == ids[:240]
    assert await _claims(database) == [(i, m1) for i in ids[240:]]


async def test_complete_buildrequests(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    m1 = await _rows.add_master(database)
    b1 = await _rows.add_builder(database, "b1")
    b2 = await _rows.add_builder(database, "b2")
    bsid, brids = await _buildset(database, clock, [b1, b2])
    await repo.claim_buildrequests(brids.values(), m1)
    assert await repo.incomplete_requests_of_buildset(bsid) == sorted(brids.values())
    clock.advance(100)
    await repo.complete_buildrequests([brids[b1]], Results.FAILURE)
    br = await repo.get_buildrequest(brids[b1])
    assert br is not None
    assert (br.complete, br.results, br.complete_at) == (True, Results.FAILURE, int(clock.now()))
    assert await repo.incomplete_requests_of_buildset(bsid) == [brids[b2]]
    # completing the last request does not complete the buildset here
    await repo.complete_buildrequests([brids[b2]], Results.SUCCESS, complete_at=5)
    assert await repo.incomplete_requests_of_buildset(bsid) == []
    bs = await BuildsetsRepository(engine=database.engine, clock=clock).get_buildset(bsid)
    assert bs is not None and not bs.complete
    done = await repo.get_buildrequests(complete=True)
    assert [(r.id, r.results, r.complete_at) for r in done] == [
        (brids[b1], Results.FAILURE, int(clock.now())),
        (brids[b2], Results.SUCCESS, 5),
    ]
    assert await repo.get_buildrequests(complete=False) == []


async def test_complete_is_all_or_nothing(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    builderid = await _rows.add_builder(database)
    r1, r2 = [(await _buildset(database, clock, [builderid]))[1][builderid] for _ in range(2)]
    await repo.complete_buildrequests([r1], Results.SUCCESS)
    with pytest.raises(NotClaimed):
        await repo.complete_buildrequests([r2, r1], Results.FAILURE)
    with pytest.raises(NotClaimed):
        await repo.complete_buildrequests([r2, 9999], Results.FAILURE)
    br2 = await repo.get_buildrequest(r2)
    assert br2 is not None and not br2.complete and br2.results is None
    br1 = await repo.get_buildrequest(r1)
    assert br1 is not None and br1.results == Results.SUCCESS
    with pytest.raises(ValueError, match="RETRY"):
        await repo.complete_buildrequests([r2], Results.RETRY)


async def test_complete_rolls_back_earlier_batches(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    _, brids = await _buildset(
        database, clock, [await _rows.add_builder(database, f"b{i}") for i in range(150)]
    )
    ids = sorted(brids.values())
    await repo.complete_buildrequests([ids[-1]], Results.SUCCESS)
    # the first batch of 100 succeeds, the second meets the complete one: all undone
    with pytest.raises(NotClaimed):
        await repo.complete_buildrequests(ids, Results.FAILURE)
    assert [r.id for r in await repo.get_buildrequests(complete=True)] == [ids[-1]]


async def test_get_buildrequests_filters(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    m1 = await _rows.add_master(database)
    b1 = await _rows.add_builder(database, "b1")
    b2 = await _rows.add_builder(database, "b2")
    bs1, one = await _buildset(database, clock, [b1, b2], branch="main")
    _bs2, two = await _buildset(database, clock, [b1], branch="dev", repository="https://git/o")
    assert [r.id for r in await repo.get_buildrequests(builderid=b1)] == [one[b1], two[b1]]
    assert [r.id for r in await repo.get_buildrequests(bsid=bs1)] == [one[b1], one[b2]]
    assert [r.id for r in await repo.get_buildrequests(branch="dev")] == [two[b1]]
    assert [r.id for r in await repo.get_buildrequests(repository="https://git/r")] == [
        one[b1],
        one[b2],
    ]
    assert await repo.get_buildrequests(branch="dev", repository="https://git/r") == []
    await repo.claim_buildrequests([one[b2]], m1)
    await repo.complete_buildrequests([two[b1]], Results.SUCCESS)
    # claimed=False means claimable: no claim and not complete
    assert [r.id for r in await repo.get_buildrequests(claimed=False)] == [one[b1]]
    by_builder = QueryOptions(order=("-buildername", "buildrequestid"))
    assert [r.id for r in await repo.get_buildrequests(options=by_builder)] == [
        one[b2],
        one[b1],
        two[b1],
    ]
    # booleans are 0/1 in the database, in filters too
    claimed = QueryOptions(filters=(Filter(field="claimed", op=Op.EQ, values=(1,)),))
    assert [r.id for r in await repo.get_buildrequests(options=claimed)] == [one[b2]]
    done = QueryOptions(filters=(Filter(field="complete", op=Op.EQ, values=(1,)),))
    assert [r.id for r in await repo.get_buildrequests(options=done)] == [two[b1]]


async def test_set_priority(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    builderid = await _rows.add_builder(database)
    r1, r2 = [(await _buildset(database, clock, [builderid]))[1][builderid] for _ in range(2)]
    await repo.set_buildrequests_priority([r1], 9)
    await repo.complete_buildrequests([r2], Results.SUCCESS)
    with pytest.raises(NotClaimed):
        await repo.set_buildrequests_priority([r1, r2], 1)
    assert [r.priority for r in await repo.get_buildrequests()] == [9, 3]


async def test_count_buildrequests_is_the_number_get_buildrequests_returns(
    database: Database, clock: FakeClock
) -> None:
    """Counted on the requests alone where no claim is asked about, through the claims
    otherwise: the same numbers either way, claimed or not, with filters or without."""
    repo = _repo(database, clock)
    m1 = await _rows.add_master(database, "m1")
    b1, b2 = await _rows.add_builder(database, "b1"), await _rows.add_builder(database, "b2")
    brids = []
    for _ in range(3):
        _, ids = await _buildset(database, clock, [b1, b2])
        brids += [ids[b1], ids[b2]]
    await repo.claim_buildrequests(brids[:2], m1)
    await repo.complete_buildrequests([brids[0]], Results.SUCCESS)
    on_b2 = QueryOptions(filters=(Filter(field="builderid", op=Op.EQ, values=(b2,)),))
    by_claim = QueryOptions(filters=(Filter(field="claimed", op=Op.EQ, values=(1,)),))
    cases: list[dict[str, object]] = [
        {},
        {"builderid": b1},
        {"complete": False},
        {"complete": True},
        {"claimed": True},
        {"claimed": False},
        {"claimed": m1},
        {"options": on_b2},
        {"options": by_claim},
        {"builderid": b1, "complete": False, "options": on_b2},
    ]
    for kw in cases:
        got = await repo.get_buildrequests(**kw)  # type: ignore[arg-type]
        assert await repo.count_buildrequests(**kw) == len(got), kw  # type: ignore[arg-type]
    assert await repo.count_buildrequests() == 6
    assert await repo.count_buildrequests(options=on_b2) == 3

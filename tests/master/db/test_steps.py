"""The steps connector on both backends."""

from __future__ import annotations

import asyncio

import pytest

from buildyard.master.db.connector import Database
from buildyard.master.db.errors import DbError
from buildyard.master.db.steps import StepsRepository, unique_name
from buildyard.master.model.results import Results
from buildyard.master.model.steps import StepUrl
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows


def _repo(database: Database, clock: FakeClock) -> StepsRepository:
    return StepsRepository(engine=database.engine, clock=clock)


async def _build(database: Database) -> int:
    masterid = await _rows.add_master(database)
    builderid = await _rows.add_builder(database)
    _bsid, brid = await _rows.add_request(database, builderid)
    return await _rows.add_build(
        database, builderid=builderid, buildrequestid=brid, masterid=masterid, number=1
    )


async def test_add_step_numbers_from_zero_and_reads(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    buildid = await _build(database)
    other = await _build_on_new_builder(database)
    s0 = await repo.add_step(buildid, "git", "pending")
    s1 = await repo.add_step(buildid, "compile", "pending")
    t0 = await repo.add_step(other, "git", "pending")
    assert (s0[1:], s1[1:], t0[1:]) == ((0, "git"), (1, "compile"), (0, "git"))
    step = await repo.get_step(s1[0])
    assert step is not None
    assert (step.id, step.number, step.name, step.buildid, step.state_string) == (
        s1[0],
        1,
        "compile",
        buildid,
        "pending",
    )
    assert (step.started_at, step.locks_acquired_at, step.complete_at, step.results) == (
        None,
        None,
        None,
        None,
    )
    assert (step.urls, step.hidden) == ((), False)
    by_number = await repo.get_step(buildid=buildid, number=0)
    by_name = await repo.get_step(buildid=buildid, name="compile")
    assert by_number is not None and by_number.id == s0[0]
    assert by_name is not None and by_name.id == s1[0]
    assert await repo.get_step(buildid=other, name="compile") is None
    assert [s.name for s in await repo.get_steps(buildid)] == ["git", "compile"]
    with pytest.raises(ValueError, match="stepid"):
        await repo.get_step(buildid=buildid)


async def _build_on_new_builder(database: Database) -> int:
    masterid = await _rows.add_master(database, "m2")
    builderid = await _rows.add_builder(database, "b2")
    _bsid, brid = await _rows.add_request(database, builderid)
    return await _rows.add_build(
        database, builderid=builderid, buildrequestid=brid, masterid=masterid, number=1
    )


async def test_name_collisions_get_suffixes(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    buildid = await _build(database)
    got = [(await repo.add_step(buildid, "test", ""))[1:] for _ in range(3)]
    assert got == [(0, "test"), (1, "test_1"), (2, "test_2")]
    # a user step already called test_3 pushes the next duplicate past it
    assert (await repo.add_step(buildid, "test_3", ""))[2] == "test_3"
    assert (await repo.add_step(buildid, "test", ""))[2] == "test_4"


async def test_suffix_fits_fifty_characters(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    buildid = await _build(database)
    long = "x" * 50
    assert (await repo.add_step(buildid, long, ""))[2] == long
    second = (await repo.add_step(buildid, long, ""))[2]
    assert second == "x" * 48 + "_1" and len(second) == 50
    with pytest.raises(ValueError, match="longer than 50"):
        await repo.add_step(buildid, "y" * 51, "")


def test_unique_name() -> None:
    assert unique_name("a", set()) == "a"
    assert unique_name("a", {"a", "a_1"}) == "a_2"
    taken = {"z" * 50} | {"z" * 48 + f"_{i}" for i in range(1, 10)}
    assert unique_name("z" * 50, taken) == "z" * 47 + "_10"


async def test_concurrent_add_step_distinct(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    buildid = await _build(database)
    got = await asyncio.gather(*(repo.add_step(buildid, "s", "") for _ in range(5)))
    assert sorted(n for _id, n, _name in got) == [0, 1, 2, 3, 4]
    assert sorted(name for _id, _n, name in got) == ["s", "s_1", "s_2", "s_3", "s_4"]


async def test_add_step_to_unknown_build(database: Database, clock: FakeClock) -> None:
    with pytest.raises(DbError, match="no build 9999"):
        await _repo(database, clock).add_step(9999, "s", "")


async def test_lifecycle(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    buildid = await _build(database)
    a, _, _ = await repo.add_step(buildid, "a", "")
    b, _, _ = await repo.add_step(buildid, "b", "")
    clock.advance(10)
    await repo.start_step(a)
    await repo.start_step(b, started_at=5, locks_acquired=True)
    await repo.set_step_locks_acquired_at(a, int(clock.now()) + 2)
    await repo.set_step_state_string(a, "running")
    clock.advance(10)
    await repo.finish_step(a, Results.FAILURE, hidden=True)
    step = await repo.get_step(a)
    assert step is not None
    assert (step.started_at, step.locks_acquired_at, step.complete_at) == (
        int(clock.now()) - 10,
        int(clock.now()) - 8,
        int(clock.now()),
    )
    assert (step.state_string, step.results, step.hidden) == ("running", Results.FAILURE, True)
    other = await repo.get_step(b)
    assert other is not None
    assert (other.started_at, other.locks_acquired_at, other.results) == (5, 5, None)


async def test_urls_append_without_duplicates(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    buildid = await _build(database)
    stepid, _, _ = await repo.add_step(buildid, "a", "")
    await repo.add_step_url(stepid, "report", "http://x/1")
    await repo.add_step_url(stepid, "report", "http://x/1")
    await repo.add_step_url(stepid, "report", "http://x/2")
    await asyncio.gather(*(repo.add_step_url(stepid, f"u{i}", f"http://u/{i}") for i in range(5)))
    step = await repo.get_step(stepid)
    assert step is not None
    assert step.urls[:2] == (
        StepUrl(name="report", url="http://x/1"),
        StepUrl(name="report", url="http://x/2"),
    )
    # concurrent additions are all kept
    assert sorted(u.name for u in step.urls[2:]) == [f"u{i}" for i in range(5)]
    with pytest.raises(DbError):
        await repo.add_step_url(9999, "n", "u")

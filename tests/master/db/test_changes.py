"""The changes connector on both backends."""

from __future__ import annotations

import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db.changes import ChangesRepository
from buildyard.master.db.connector import Database
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.master.db.sourcestamps import SourcestampsRepository
from buildyard.master.model.results import Results
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows


def _repo(database: Database, clock: FakeClock) -> ChangesRepository:
    return ChangesRepository(engine=database.engine, clock=clock)


async def _add(
    repo: ChangesRepository,
    revision: str,
    *,
    branch: str | None = "main",
    repository: str = "https://git/r",
    codebase: str = "",
    project: str = "",
    author: str = "alice",
) -> int:
    return await repo.add_change(
        author=author,
        comments=f"commit {revision}",
        revision=revision,
        when_timestamp=1000,
        branch=branch,
        repository=repository,
        codebase=codebase,
        project=project,
    )


async def test_add_change_round_trip(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    async with database.transaction() as c:
        await c.execute(t.users.insert().values(uid=7, identifier="alice"))
    changeid = await repo.add_change(
        author="alice <a@x>",
        committer="bob <b@x>",
        files=["src/a.py", "README"],
        comments="fix it",
        revision="abc123",
        when_timestamp=1_600_000_000,
        branch="main",
        category="bugfix",
        revlink="https://git/r/abc123",
        properties={"ticket": (42, "Change"), "tags": (["x", "y"], "Change")},
        repository="https://git/r",
        codebase="cb",
        project="proj",
        uid=7,
    )
    ch = await repo.get_change(changeid)
    assert ch is not None
    assert (ch.id, ch.author, ch.committer, ch.comments, ch.revision) == (
        changeid,
        "alice <a@x>",
        "bob <b@x>",
        "fix it",
        "abc123",
    )
    assert (ch.when_timestamp, ch.branch, ch.category, ch.revlink) == (
        1_600_000_000,
        "main",
        "bugfix",
        "https://git/r/abc123",
    )
    assert (ch.repository, ch.codebase, ch.project) == ("https://git/r", "cb", "proj")
    assert sorted(ch.files) == ["README", "src/a.py"]
    assert ch.properties == {"ticket": (42, "Change"), "tags": (["x", "y"], "Change")}
    assert ch.parent_changeids == ()
    ss = await SourcestampsRepository(engine=database.engine, clock=clock).get_sourcestamp(
        ch.sourcestampid
    )
    assert ss is not None
    assert (ss.branch, ss.revision, ss.repository, ss.codebase, ss.project) == (
        "main",
        "abc123",
        "https://git/r",
        "cb",
        "proj",
    )
    async with database.reading() as c:
        users = (await c.execute(sa.select(t.change_users.c.changeid, t.change_users.c.uid))).all()
        stored = (await c.execute(sa.select(t.change_properties.c.property_value))).scalars()
        values = sorted(stored)
    assert [tuple(u) for u in users] == [(changeid, 7)]
    # docs/database.md, "Conventions": change properties are stored as JSON [value, source]
    assert values == ['[42, "Change"]', '[["x", "y"], "Change"]']


async def test_when_timestamp_defaults_to_now(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    changeid = await repo.add_change(author="a", comments="c")
    ch = await repo.get_change(changeid)
    assert ch is not None
    assert ch.when_timestamp == int(clock.now())
    assert (ch.files, ch.properties, ch.branch, ch.repository) == ((), {}, None, "")


async def test_parent_is_latest_change_on_same_line(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    a = await _add(repo, "a")
    other_branch = await _add(repo, "x", branch="dev")
    other_repo = await _add(repo, "y", repository="https://git/other")
    other_codebase = await _add(repo, "z", codebase="cb2")
    other_project = await _add(repo, "w", project="p2")
    b = await _add(repo, "b")
    c = await _add(repo, "c")
    no_branch_1 = await _add(repo, "n1", branch=None)
    no_branch_2 = await _add(repo, "n2", branch=None)

    async def parents(changeid: int) -> tuple[int, ...]:
        ch = await repo.get_change(changeid)
        assert ch is not None
        return ch.parent_changeids

    assert await parents(a) == ()
    for first in (other_branch, other_repo, other_codebase, other_project, no_branch_1):
        assert await parents(first) == ()
    assert await parents(b) == (a,)
    assert await parents(c) == (b,)
    assert await parents(no_branch_2) == (no_branch_1,)


async def test_same_revision_shares_sourcestamp(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    first = await repo.get_change(await _add(repo, "same"))
    second = await repo.get_change(await _add(repo, "same"))
    assert first is not None and second is not None
    assert first.sourcestampid == second.sourcestampid
    latest = await repo.get_change_from_ssid(first.sourcestampid)
    assert latest is not None and latest.id == second.id


async def test_get_changes_count_latest_and_options(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    assert await repo.get_latest_changeid() is None
    assert await repo.get_changes() == []
    ids = [
        await _add(repo, rev, author=who) for rev, who in (("1", "bob"), ("2", "al"), ("3", "bob"))
    ]
    assert [ch.id for ch in await repo.get_changes()] == ids
    assert await repo.get_changes_count() == 3
    assert await repo.get_latest_changeid() == ids[2]
    bobs = QueryOptions(filters=(Filter(field="author", op=Op.EQ, values=("bob",)),))
    assert [ch.revision for ch in await repo.get_changes(bobs)] == ["1", "3"]
    assert await repo.get_changes_count(bobs) == 2
    newest_first = QueryOptions(order=("-changeid",), limit=2)
    assert [ch.revision for ch in await repo.get_changes(newest_first)] == ["3", "2"]


async def test_prune_keeps_newest(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    ids = []
    for i in range(5):
        ids.append(
            await repo.add_change(
                author="a",
                comments="c",
                revision=str(i),
                branch="main",
                files=[f"f{i}"],
                properties={"i": (i, "Change")},
            )
        )
    async with database.transaction() as c:
        await c.execute(t.schedulers.insert().values(id=1, name="s", name_hash="h"))
        await c.execute(
            t.scheduler_changes.insert(), [{"schedulerid": 1, "changeid": i} for i in ids]
        )
    assert await repo.prune_changes(0) == 0
    assert await repo.prune_changes(2, batch=2) == 3  # in two transactions
    assert [ch.id for ch in await repo.get_changes()] == ids[3:]
    oldest_kept = await repo.get_change(ids[3])
    assert oldest_kept is not None and oldest_kept.parent_changeids == ()
    newest = await repo.get_change(ids[4])
    assert newest is not None and newest.parent_changeids == (ids[3],)
    async with database.reading() as c:
        for table in (t.change_files, t.change_properties, t.scheduler_changes):
            left = (await c.execute(sa.select(table.c.changeid))).scalars()
            assert sorted(left) == ids[3:], table.name
    assert await repo.prune_changes(10) == 0


async def test_changes_for_buildset_latest_per_stamp(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    a1 = await _add(repo, "a", codebase="A")
    a2 = await _add(repo, "a", codebase="A")  # same stamp again
    b = await _add(repo, "b", codebase="B")
    await _add(repo, "c", codebase="C")  # not in the buildset
    cha, chb = await repo.get_change(a1), await repo.get_change(b)
    assert cha is not None and chb is not None
    builderid = await _rows.add_builder(database)
    bsid, _ = await _rows.add_request(
        database, builderid, ssids=(chb.sourcestampid, cha.sourcestampid)
    )
    assert [ch.id for ch in await repo.get_changes_for_buildset(bsid)] == [a2, b]


async def _build_for(
    database: Database,
    repo: ChangesRepository,
    changeid: int,
    *,
    masterid: int,
    builderid: int,
    number: int,
    results: Results | None,
    complete_at: int | None = None,
) -> int:
    ch = await repo.get_change(changeid)
    assert ch is not None
    _bsid, brid = await _rows.add_request(database, builderid, ssids=(ch.sourcestampid,))
    return await _rows.add_build(
        database,
        builderid=builderid,
        buildrequestid=brid,
        masterid=masterid,
        number=number,
        results=None if results is None else int(results),
        complete_at=complete_at,
    )


async def test_changes_for_build_since_previous_success(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    masterid = await _rows.add_master(database)
    builderid = await _rows.add_builder(database)
    c1, c2, c3, c4, c5 = [await _add(repo, str(i)) for i in range(1, 6)]
    await _build_for(
        database,
        repo,
        c1,
        masterid=masterid,
        builderid=builderid,
        number=1,
        results=Results.SUCCESS,
        complete_at=10,
    )
    await _build_for(
        database,
        repo,
        c2,
        masterid=masterid,
        builderid=builderid,
        number=2,
        results=Results.SUCCESS,
        complete_at=20,
    )
    # a failure does not count as the previous build
    await _build_for(
        database,
        repo,
        c4,
        masterid=masterid,
        builderid=builderid,
        number=3,
        results=Results.FAILURE,
        complete_at=30,
    )
    b4 = await _build_for(
        database, repo, c5, masterid=masterid, builderid=builderid, number=4, results=None
    )
    # back to the change of the last successful build (c2), newest first
    assert [ch.id for ch in await repo.get_changes_for_build(b4)] == [c5, c4, c3]


async def test_changes_for_build_without_previous_is_whole_history(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    masterid = await _rows.add_master(database)
    builderid = await _rows.add_builder(database)
    c1, c2, c3 = [await _add(repo, str(i)) for i in range(1, 4)]
    other_line = await _add(repo, "x", branch="dev")
    b = await _build_for(
        database, repo, c3, masterid=masterid, builderid=builderid, number=1, results=None
    )
    assert [ch.id for ch in await repo.get_changes_for_build(b)] == [c3, c2, c1]
    assert other_line not in [ch.id for ch in await repo.get_changes_for_build(b)]
    # rebuilding the same change as the previous success brings no changes
    async with database.transaction() as c:
        await c.execute(
            t.builds.update().where(t.builds.c.id == b).values(results=0, complete_at=5)
        )
    again = await _build_for(
        database, repo, c3, masterid=masterid, builderid=builderid, number=2, results=None
    )
    assert await repo.get_changes_for_build(again) == []
    assert await repo.get_changes_for_build(9999) == []

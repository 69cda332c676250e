"""The projects connector on both backends."""

from __future__ import annotations

import asyncio

import pytest

from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database
from buildyard.master.db.projects import ProjectsRepository, slug_for
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.master.model.projects import Project
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows


def _repo(database: Database, clock: FakeClock) -> ProjectsRepository:
    return ProjectsRepository(engine=database.engine, clock=clock)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("buildyard", "buildyard"),
        ("my-project_2", "my-project_2"),
        ("my project/web", "my_project_web"),
        ("2fast", "_fast"),
        ("ünïcode", "ünïcode"),
        ("a.b", "a_b"),
        ("x" * 60, "x" * 50),
        ("y" * 49 + " tail", "y" * 49 + "_"),
        ("", ""),
    ],
)
def test_slug_for(name: str, slug: str) -> None:
    assert slug_for(name) == slug


async def test_find_project_id_creates_with_slug(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    pid = await repo.find_project_id("My Project")
    assert await repo.find_project_id("My Project") == pid
    assert await repo.find_project_id("Other") != pid
    assert await repo.get_project(pid) == Project(id=pid, name="My Project", slug="My_Project")
    assert await repo.get_project(pid + 100) is None
    ids = await asyncio.gather(*(repo.find_project_id("raced") for _ in range(8)))
    assert len(set(ids)) == 1


async def test_update_project_info(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    pid = await repo.find_project_id("p")
    other = await repo.find_project_id("q")
    await repo.update_project_info(
        pid,
        slug="proj",
        description="# P",
        description_format="markdown",
        description_html="<h1>P</h1>",
    )
    assert await repo.get_project(pid) == Project(
        id=pid,
        name="p",
        slug="proj",
        description="# P",
        description_format="markdown",
        description_html="<h1>P</h1>",
    )
    assert await repo.get_project(other) == Project(id=other, name="q", slug="q")
    await repo.update_project_info(
        pid, slug="p", description=None, description_format=None, description_html=None
    )
    assert await repo.get_project(pid) == Project(id=pid, name="p", slug="p")


async def test_active_projects_have_a_builder_on_an_active_master(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    on_live, on_dead, unlinked, empty = [
        await repo.find_project_id(n) for n in ("live", "dead", "unlinked", "empty")
    ]
    live = await _rows.add_master(database, "live")  # added active
    dead = await _rows.add_master(database, "dead")
    async with database.transaction() as c:
        await c.execute(t.masters.update().where(t.masters.c.id == dead).values(active=0))
    for pid, masterids in ((on_live, (live, dead)), (on_dead, (dead,)), (unlinked, ())):
        for n in range(2):
            bid = await _rows.add_builder(database, f"{pid}-{n}")
            async with database.transaction() as c:
                await c.execute(
                    t.builders.update().where(t.builders.c.id == bid).values(projectid=pid)
                )
                for mid in masterids:
                    await c.execute(t.builder_masters.insert().values(builderid=bid, masterid=mid))
    # by name, as Buildbot lists them
    assert [p.id for p in await repo.get_projects()] == [on_dead, empty, on_live, unlinked]
    # once each, though two builders qualify
    assert [p.id for p in await repo.get_projects(active=True)] == [on_live]
    assert [p.id for p in await repo.get_projects(active=False)] == [on_dead, empty, unlinked]
    assert await repo.count_projects(active=False) == 3
    opts = QueryOptions(
        filters=(Filter(field="slug", op=Op.CONTAINS, values=("d",)),), order=("-name",), limit=1
    )
    assert [p.name for p in await repo.get_projects(active=False, options=opts)] == ["unlinked"]
    assert await repo.count_projects(active=False, options=opts) == 2

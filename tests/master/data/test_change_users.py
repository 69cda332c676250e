"""Users made from a change's author, as Buildbot's addChange makes them: a change whose
``src`` is a version control Buildbot knows ("git", "svn", ...) is linked (change_users) to the
user whose attribute of that type is the author, created and named after the author the first
time; another ``src``, or none, links no user."""

from __future__ import annotations

import sqlalchemy as sa

from buildyard.master.data.updates import Updates
from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database


async def _links(database: Database) -> dict[int, int]:
    async with database.transaction() as c:
        rows = await c.execute(sa.select(t.change_users.c.changeid, t.change_users.c.uid))
        return {int(r.changeid): int(r.uid) for r in rows}


async def test_a_git_author_becomes_one_user_linked_to_each_of_their_changes(
    updates: Updates, database: Database
) -> None:
    jane = "Jane Doe <jane@example.org>"
    first = await updates.add_change(author=jane, revision="a1", src="git")
    second = await updates.add_change(author=jane, revision="a2", src="git")
    other = await updates.add_change(author="bob", revision="a3", src="hg")
    [user_jane, user_bob] = await database.users.get_users()
    assert (user_jane.identifier, dict(user_jane.attributes)) == (jane, {"git": jane})
    assert (user_bob.identifier, dict(user_bob.attributes)) == ("bob", {"hg": "bob"})
    assert await _links(database) == {
        first: user_jane.uid,
        second: user_jane.uid,
        other: user_bob.uid,
    }


async def test_the_same_name_from_another_vcs_is_another_user(
    updates: Updates, database: Database
) -> None:
    await updates.add_change(author="ann", src="git")
    await updates.add_change(author="ann", src="svn")
    users = await database.users.get_users()
    # the identifier is taken: the second user gets the next free one (as Buildbot)
    assert [(u.identifier, dict(u.attributes)) for u in users] == [
        ("ann", {"git": "ann"}),
        ("ann_2", {"svn": "ann"}),
    ]


async def test_no_or_an_unknown_src_makes_no_user(updates: Updates, database: Database) -> None:
    await updates.add_change(author="carl")
    await updates.add_change(author="carl", src="bitbucket")
    assert await database.users.get_users() == []
    assert await _links(database) == {}

"""c['revlink'] and c['codebaseGenerator'] applied to changes as they are added."""

from __future__ import annotations

from pathlib import Path

from buildyard.testing.masters import running_master

BODY = """
def revlink(revision, repository):
    if repository == "broken":
        raise RuntimeError("no link for you")
    return f"{repository}/commit/{revision}"

def codebase(change):
    if change["project"] == "broken":
        raise RuntimeError("no codebase")
    return change["repository"].rsplit("/", 1)[-1] + ":" + change["branch"]

c['revlink'] = revlink
c['codebaseGenerator'] = codebase
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=util.BuildFactory())]
"""


async def test_revlink_and_codebase_generator(tmp_path: Path) -> None:
    async with running_master(tmp_path, BODY) as running:
        updates, db = running.master.data.updates, running.master.db

        async def added(**fields: object) -> tuple[str | None, str]:
            changeid = await updates.add_change(author="a", revision="abc", **fields)  # type: ignore[arg-type]
            change = await db.changes.get_change(changeid)
            assert change is not None
            stamp = await db.sourcestamps.get_sourcestamp(change.sourcestampid)
            assert stamp is not None
            return change.revlink, stamp.codebase

        made = await added(repository="https://git.example/lib", branch="main")
        assert made == ("https://git.example/lib/commit/abc", "lib:main")
        # what the change source gave wins
        given = await added(
            repository="https://git.example/lib", branch="dev", revlink="L", codebase="cb"
        )
        assert given == ("L", "cb")
        # a hook that raises is left out; the change is recorded all the same
        assert await added(repository="broken", branch="x", project="broken") == ("", "")

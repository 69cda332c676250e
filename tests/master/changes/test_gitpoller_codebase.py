"""GitPoller(codebase=util.Codebase(...)): each new change is also a commit of the codebase,
linked to its first parent, and the branch moves to the last one (Buildbot 4's codebase
history), against real repositories and both database backends."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from buildyard.common.errors import ConfigError
from buildyard.master.changes.base import ChangeSourceContext
from buildyard.master.changes.gitpoller import GitPoller, GitPollerService
from buildyard.master.db.connector import Database
from buildyard.master.model.projectconfig import Codebase, Project
from buildyard.master.mq.local import LocalMQ
from buildyard.testing.clock import FakeClock
from tests.master.changes.conftest import AUTHOR, COMMITTER, Upstream

CODEBASE = Codebase("app", project="proj")


def make_poller(ctx: ChangeSourceContext, repourl: str, **kwargs: Any) -> GitPollerService:
    config = GitPoller(repourl, codebase=CODEBASE, **kwargs)
    return config.make_service(config.name, ctx)


async def configured(ctx: ChangeSourceContext) -> int:
    """The codebase as the master's configuration step creates it; its id."""
    ids = await ctx.updates.configure_projects([Project("proj")], [CODEBASE])
    return ids[("proj", "app")]


async def history(database: Database, codebaseid: int) -> list[tuple[str, str | None]]:
    """Each commit's revision and its parent's revision, in the order they were recorded."""
    commits = await database.codebase_commits.get_commits(codebaseid=codebaseid)
    by_id = {c.id: c.revision for c in commits}
    return [
        (c.revision, None if c.parent_commitid is None else by_id[c.parent_commitid])
        for c in commits
    ]


async def branches(database: Database, codebaseid: int) -> dict[str, str | None]:
    found = await database.codebase_branches.get_branches(codebaseid)
    commits = await database.codebase_commits.get_commits(codebaseid=codebaseid)
    by_id = {c.id: c.revision for c in commits}
    return {b.name: None if b.commitid is None else by_id[b.commitid] for b in found}


def test_codebase_must_be_a_util_codebase() -> None:
    with pytest.raises(ConfigError, match=r"instance of Codebase \(util\.Codebase\), not 'app'"):
        GitPoller("/tmp/repo", codebase="app")


async def test_commits_are_recorded_with_their_parents_and_the_branch_follows(
    ctx: ChangeSourceContext,
    database: Database,
    upstream: Upstream,
    mq: LocalMQ,
    clock: FakeClock,
) -> None:
    codebaseid = await configured(ctx)
    first = upstream.commit("initial")
    poller = make_poller(ctx, upstream.url, branches=["main"])
    await poller.poll()
    # as in Buildbot, the first poll's history is not news: nothing recorded
    assert await history(database, codebaseid) == []

    revisions = [upstream.commit(f"commit {i}\n\nbody {i}") for i in range(3)]
    sub = mq.subscribe(("codebases", None, "commits", None, "new"), ("branches", None, "update"))
    clock.advance(100)
    await poller.poll()
    # the first new commit's parent was never recorded: it starts the chain
    assert await history(database, codebaseid) == [
        (revisions[0], None),
        (revisions[1], revisions[0]),
        (revisions[2], revisions[1]),
    ]
    commits = await database.codebase_commits.get_commits(codebaseid=codebaseid)
    assert [(c.author, c.committer) for c in commits] == [(AUTHOR, COMMITTER)] * 3
    assert commits[0].comments == "commit 0\nbody 0"
    assert commits[0].when_timestamp == upstream.time - 120
    [branch] = await database.codebase_branches.get_branches(codebaseid)
    assert (branch.name, branch.commitid, branch.last_timestamp) == (
        "main",
        commits[-1].id,
        int(clock.now()),
    )
    keys = [(await sub.get())[0] for _ in range(sub.pending)]
    assert keys == [
        *[("codebases", str(codebaseid), "commits", str(c.id), "new") for c in commits],
        ("branches", str(branch.id), "update"),
    ]
    assert first not in {r for r, _ in await history(database, codebaseid)}

    # the next poll links its first commit to the last recorded one
    later = upstream.commit("later")
    await poller.poll()
    assert (await history(database, codebaseid))[-1] == (later, revisions[2])
    assert await branches(database, codebaseid) == {"main": later}


async def test_each_branch_moves_to_its_own_head(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    codebaseid = await configured(ctx)
    base = upstream.commit("initial")
    upstream.git("branch", "dev")
    poller = make_poller(ctx, upstream.url, branches=True)
    await poller.poll()
    main = upstream.commit("on main")
    upstream.checkout("dev")
    dev = upstream.commit("on dev")
    await poller.poll()
    # branches=True keys refs by their full name (as Buildbot): so are the codebase's branches
    assert await branches(database, codebaseid) == {"refs/heads/main": main, "refs/heads/dev": dev}
    # both start from the same parent, which was never recorded
    assert sorted(await history(database, codebaseid)) == sorted([(main, None), (dev, None)])
    assert base not in dict(await history(database, codebaseid))


async def test_a_push_to_a_known_commit_moves_the_branch_without_a_second_commit(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    codebaseid = await configured(ctx)
    upstream.commit("initial")
    poller = make_poller(
        ctx, upstream.url, branches=["main", "release"], buildPushesWithNoCommits=True
    )
    upstream.git("branch", "release")
    await poller.poll()
    head = upstream.commit("fix")
    await poller.poll()
    upstream.git("branch", "-f", "release", "main")
    await poller.poll()
    # Buildbot 4.3.0 tries to add the commit again, which its unique index refuses
    assert await history(database, codebaseid) == [(head, None)]
    assert await branches(database, codebaseid) == {"main": head, "release": head}


async def test_an_unconfigured_project_is_logged_and_changes_still_stored(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    poller = make_poller(ctx, upstream.url, branches=["main"])
    await poller.poll()
    revision = upstream.commit("new")
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    assert [c.revision for c in await database.changes.get_changes()] == [revision]
    [event] = [e for e in logs if e["event"] == "gitpoller_codebase_unknown"]
    assert "project 'proj' is not configured" in event["error"]
    assert await database.codebases.get_codebases() == []

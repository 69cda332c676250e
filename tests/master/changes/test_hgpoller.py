"""HgPoller against real Mercurial repositories: what each poll reports, what it remembers
across a restart, and the configuration errors it names."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import structlog

from buildyard.common.errors import ConfigErrors, collecting_config_errors
from buildyard.master.changes.base import ChangeSourceContext
from buildyard.master.changes.hgpoller import HgPoller, HgPollerService
from buildyard.master.db.connector import Database
from buildyard.master.model.changes import Change
from buildyard.testing.clock import FakeClock
from buildyard.testing.processes import eventually

# hg as the tests drive it: no user configuration
HG_ENV = {**os.environ, "HGPLAIN": "1", "HGRCPATH": os.devnull}
AUTHOR = "Ann Author <ann@example.org>"


class HgUpstream:
    """The repository a poller watches, committed to directly, with commit times one minute
    apart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.time = 1_600_000_000
        path.mkdir(parents=True)
        self.hg("init")

    @property
    def url(self) -> str:
        return str(self.path)

    def hg(self, *args: str) -> str:
        done = subprocess.run(
            ["hg", *args], cwd=self.path, env=HG_ENV, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    def commit(
        self, message: str, files: dict[str, str] | None = None, *, author: str = AUTHOR
    ) -> str:
        self.time += 60
        for name, content in (files or {f"file-{self.time}.txt": message}).items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        self.hg("addremove", "-q")
        self.hg("commit", "-m", message, "-u", author, "-d", f"{self.time} 0")
        return self.node()

    def node(self, rev: str = ".") -> str:
        return self.hg("log", "-r", rev, "-T", "{node}")


@pytest.fixture
def hg_upstream(tmp_path: Path) -> HgUpstream:
    return HgUpstream(tmp_path / "hg-upstream")


def make_poller(ctx: ChangeSourceContext, repourl: str, **kwargs: Any) -> HgPollerService:
    kwargs.setdefault("workdir", "hgpoller-work")
    config = HgPoller(repourl, **kwargs)
    return config.make_service(config.name, ctx)


async def changes(database: Database) -> list[Change]:
    return await database.changes.get_changes()


async def last_rev(ctx: ChangeSourceContext, name: str) -> Any:
    objectid = await ctx.updates.get_object_id(name, "HgPoller")
    return await ctx.updates.get_state(objectid, "lastRev")


async def test_first_poll_records_then_new_changesets_become_changes(
    ctx: ChangeSourceContext, database: Database, hg_upstream: HgUpstream, basedir: Path
) -> None:
    first = hg_upstream.commit("initial")
    poller = make_poller(
        ctx,
        hg_upstream.url,
        project="proj",
        category="ci",
        revlink=lambda branch, rev: f"https://hg.example.org/{branch}/rev/{rev}",
    )
    await poller.poll()
    assert await changes(database) == []
    assert await last_rev(ctx, hg_upstream.url) == {"default": first}
    # the workdir is a repository under the master's basedir
    assert (basedir / "hgpoller-work" / ".hg").is_dir()

    second = hg_upstream.commit(
        "Fix the frobnicator\n\nIt frobbed twice.\n",
        {"src/frob.c": "int x;\n", "README": "hello\n"},
    )
    third = hg_upstream.commit("and again", author="Bo <bo@example.org>")
    await poller.poll()
    got = await changes(database)
    assert [c.revision for c in got] == [second, third]
    change = got[0]
    assert change.author == AUTHOR
    assert change.committer is None
    assert change.comments == "Fix the frobnicator\n\nIt frobbed twice."
    assert sorted(change.files) == ["README", "src/frob.c"]
    assert change.when_timestamp == hg_upstream.time - 60
    assert change.branch == "default"
    assert change.repository == hg_upstream.url
    assert change.project == "proj"
    assert change.category == "ci"
    assert change.revlink == f"https://hg.example.org/default/rev/{second}"
    assert got[1].author == "Bo <bo@example.org>"
    assert await last_rev(ctx, hg_upstream.url) == {"default": third}
    # nothing new: nothing reported
    await poller.poll()
    assert len(await changes(database)) == 2


async def test_branches_and_bookmarks(
    ctx: ChangeSourceContext, database: Database, hg_upstream: HgUpstream
) -> None:
    hg_upstream.commit("initial")
    hg_upstream.hg("branch", "-q", "stable")
    hg_upstream.commit("stable starts")
    hg_upstream.hg("update", "-q", "default")
    hg_upstream.hg("bookmark", "feature")
    hg_upstream.commit("feature starts")
    poller = make_poller(
        ctx,
        hg_upstream.url,
        branches=["default", "stable"],
        bookmarks=["feature"],
        category=lambda change: f"{change['branch']}:{change['comments']}",
    )
    # Buildbot's name: repourl, the bookmarks, the branches
    assert poller.name == f"{hg_upstream.url}_feature_default_stable"
    await poller.poll()
    assert await changes(database) == []

    on_feature = hg_upstream.commit("on the bookmark")  # the active bookmark moves
    hg_upstream.hg("update", "-q", "stable")
    on_stable = hg_upstream.commit("on stable")
    await poller.poll()
    got = {(c.branch, c.revision) for c in await changes(database)}
    # the bookmark's own changeset (it sits on default, which has only this head)
    assert got == {("stable", on_stable), ("default", on_feature), ("feature", on_feature)}
    # a callable category is given the change as a dict
    assert {c.category for c in await changes(database)} == {
        "stable:on stable",
        "default:on the bookmark",
        "feature:on the bookmark",
    }
    state = await last_rev(ctx, poller.name)
    assert state == {"default": on_feature, "stable": on_stable, "feature": on_feature}


async def test_a_bookmark_off_its_branch_head_is_followed(
    ctx: ChangeSourceContext, database: Database, hg_upstream: HgUpstream
) -> None:
    """A bookmark that is not its branch's only head: Buildbot 4.3 asks ``hg heads <bookmark>``,
    which gives the heads of the bookmark's branch (several here: it reports nothing); buildyard
    follows the changeset the bookmark names."""
    base = hg_upstream.commit("initial")
    hg_upstream.commit("default goes on")
    hg_upstream.hg("update", "-q", base)
    hg_upstream.hg("bookmark", "topic")
    hg_upstream.commit("topic 1")
    poller = make_poller(ctx, hg_upstream.url, bookmarks=["topic"], usetimestamps=False)
    await poller.poll()
    topic2 = hg_upstream.commit("topic 2")
    await poller.poll()
    [change] = await changes(database)
    assert (change.branch, change.revision) == ("topic", topic2)
    # usetimestamps=False: the time the change was recorded, not the commit's
    assert change.when_timestamp != hg_upstream.time


async def test_the_service_claims_polls_at_launch_and_when_forced(
    ctx: ChangeSourceContext, database: Database, hg_upstream: HgUpstream, clock: FakeClock
) -> None:
    first = hg_upstream.commit("initial")
    poller = make_poller(ctx, hg_upstream.url, pollAtLaunch=True, pollInterval=60)
    await poller.start()
    try:
        await eventually(lambda: poller.statistics()["polls"] == 1, within=60)
        assert poller.active  # claimed in the database for this master
        await eventually(lambda: clock.sleepers == 1, within=60)
        assert await last_rev(ctx, hg_upstream.url) == {"default": first}
        new = hg_upstream.commit("new")
        poller.force()
        await eventually(lambda: poller.statistics()["polls"] == 2, within=60)
        await eventually(lambda: clock.sleepers == 1, within=60)
        assert [c.revision for c in await changes(database)] == [new]
        newer = hg_upstream.commit("newer")
        clock.advance(60)  # the next scheduled poll
        await eventually(lambda: poller.statistics()["polls"] == 3, within=60)
        await eventually(lambda: clock.sleepers == 1, within=60)
        assert [c.revision for c in await changes(database)] == [new, newer]
    finally:
        await poller.stop()
    assert not poller.active


async def test_several_heads_keep_the_old_head(
    ctx: ChangeSourceContext, database: Database, hg_upstream: HgUpstream
) -> None:
    base = hg_upstream.commit("initial")
    poller = make_poller(ctx, hg_upstream.url)
    await poller.poll()
    hg_upstream.commit("head one")
    hg_upstream.hg("update", "-q", base)
    hg_upstream.commit("head two")
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    assert await changes(database) == []
    assert any(e["event"] == "hgpoller_several_heads" for e in logs)
    assert await last_rev(ctx, hg_upstream.url) == {"default": base}
    # merged: one head again, and everything since the old head is reported
    hg_upstream.hg("merge", "-q")
    merge = hg_upstream.commit("merge")
    await poller.poll()
    got = await changes(database)
    assert [c.comments for c in got][-1] == "merge"
    assert {c.comments for c in got} == {"head one", "head two", "merge"}
    assert got[-1].revision == merge


async def test_state_survives_a_restart_and_a_lost_workdir(
    ctx: ChangeSourceContext, database: Database, hg_upstream: HgUpstream, basedir: Path
) -> None:
    hg_upstream.commit("initial")
    poller = make_poller(ctx, hg_upstream.url)
    await poller.poll()
    while_down = [hg_upstream.commit("one"), hg_upstream.commit("two")]
    # a new service (a restarted master) reads the state from the database
    restarted = make_poller(ctx, hg_upstream.url)
    await restarted.poll()
    assert [c.revision for c in await changes(database)] == while_down
    # a workdir lost: pulled again, and the changesets since the stored head are reported
    await asyncio.to_thread(shutil.rmtree, basedir / "hgpoller-work")
    later = hg_upstream.commit("three")
    again = make_poller(ctx, hg_upstream.url)
    await again.poll()
    assert [c.revision for c in await changes(database)] == [*while_down, later]


async def test_buildbot_numeric_state_is_read(
    ctx: ChangeSourceContext, database: Database, hg_upstream: HgUpstream
) -> None:
    """Buildbot's state holds the workdir's local revision numbers: they still work there."""
    hg_upstream.commit("initial")
    poller = make_poller(ctx, hg_upstream.url)
    await poller.poll()
    objectid = await ctx.updates.get_object_id(hg_upstream.url, "HgPoller")
    # nothing new: no change, and the number becomes the hash it names
    await ctx.updates.set_state(objectid, "lastRev", {"default": "0"})
    await make_poller(ctx, hg_upstream.url).poll()
    assert await changes(database) == []
    assert await last_rev(ctx, hg_upstream.url) == {"default": hg_upstream.node()}
    await ctx.updates.set_state(objectid, "lastRev", {"default": "0"})
    new = hg_upstream.commit("new")
    restarted = make_poller(ctx, hg_upstream.url)
    await restarted.poll()
    assert [c.revision for c in await changes(database)] == [new]
    assert await last_rev(ctx, hg_upstream.url) == {"default": new}


async def test_failures_are_logged_by_name(
    ctx: ChangeSourceContext, database: Database, tmp_path: Path, hg_upstream: HgUpstream
) -> None:
    hg_upstream.commit("initial")
    missing = make_poller(ctx, str(tmp_path / "nowhere"))
    no_hg = make_poller(ctx, hg_upstream.url, hgbin=str(tmp_path / "no-hg"), workdir="other")
    with structlog.testing.capture_logs() as logs:
        await missing.poll()
        await no_hg.poll()
    failures = [e["error"] for e in logs if e["event"] == "hgpoller_poll_failed"]
    assert len(failures) == 2
    assert "hg pull" in failures[0]
    assert "is Mercurial installed on the master?" in failures[1]
    assert missing.statistics()["failed_polls"] == 1


def test_configuration_errors_are_named() -> None:
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        HgPoller("https://hg.example.org/repo", workdir="w", branch="a", branches=["b"])
        HgPoller("https://hg.example.org/repo")
        HgPoller("https://hg.example.org/repo", workdir="w", revlink="not callable")
        HgPoller("https://hg.example.org/repo", workdir="w", bookmarks="bm")
        HgPoller("https://hg.example.org/repo", workdir="w", pollInterval="often")
    messages = [e.message for e in errors.errors]
    assert messages == [
        "HgPoller: can't specify both branch and branches",
        "HgPoller: workdir is mandatory (as in Buildbot)",
        "HgPoller: You need to provide a valid callable for revlink",
        "HgPoller: bookmarks must be a list of names (strings)",
        "HgPoller: pollInterval must be a number of seconds",
    ]


def test_defaults_and_name() -> None:
    poller = HgPoller("https://hg.example.org/repo", workdir="w")
    assert poller.branches == ["default"]
    assert poller.name == "https://hg.example.org/repo"
    assert HgPoller("u", workdir="w", branch="stable").name == "u_stable"
    assert HgPoller("u", workdir="w", name="mine").name == "mine"

"""GitPoller against real repositories: what each poll reports, and what it remembers."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from buildyard.master.changes.base import ChangeSourceContext
from buildyard.master.changes.gitpoller import GitPoller, GitPollerService, tracker_ref
from buildyard.master.changes.manager import ChangeManager
from buildyard.master.db.connector import Database
from buildyard.master.model.changes import Change
from buildyard.master.mq.local import LocalMQ
from buildyard.testing.clock import FakeClock
from tests.master.changes.conftest import AUTHOR, COMMITTER, Upstream


def make_poller(ctx: ChangeSourceContext, repourl: str, **kwargs: Any) -> GitPollerService:
    config = GitPoller(repourl, **kwargs)
    return config.make_service(config.name, ctx)


async def changes(database: Database) -> list[Change]:
    return await database.changes.get_changes()


async def last_rev(ctx: ChangeSourceContext, name: str) -> Any:
    objectid = await ctx.updates.get_object_id(name, "GitPoller")
    return await ctx.updates.get_state(objectid, "lastRev")


async def until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    """Wait for real git processes (no fake clock drives them)."""
    async with asyncio.timeout(seconds):
        for _ in iter(int, 1):
            if condition():
                return
            await asyncio.sleep(0.01)


# -- what a poll reports --------------------------------------------------------------------------


async def test_first_poll_records_the_head_without_changes(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream, basedir: Path
) -> None:
    head = upstream.commit("initial")
    poller = make_poller(ctx, upstream.url)
    await poller.poll()
    assert await changes(database) == []
    # without branches: the branch the remote HEAD names, by its full ref (as Buildbot)
    assert await last_rev(ctx, upstream.url) == {"refs/heads/main": head}
    # the default workdir, under the master's basedir
    assert (basedir / "gitpoller-work" / "HEAD").exists()
    await poller.poll()
    assert await changes(database) == []


async def test_new_commit_is_one_change_with_its_fields(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream, mq: LocalMQ
) -> None:
    upstream.commit("initial")
    poller = make_poller(ctx, upstream.url, project="hello", category="ci")
    await poller.poll()
    revision = upstream.commit(
        "Fix the frobnicator\n\nIt frobbed twice.",
        {"src/frob.c": "int x;\n", "README": "hello\n"},
    )
    sub = mq.subscribe(("changes", None, "new"))
    await poller.poll()
    [change] = await changes(database)
    assert change.author == AUTHOR
    assert change.committer == COMMITTER
    # subject, newline, body: Buildbot's %s%n%b (the blank line between them is not kept)
    assert change.comments == "Fix the frobnicator\nIt frobbed twice."
    assert sorted(change.files) == ["README", "src/frob.c"]
    assert change.revision == revision
    assert change.when_timestamp == upstream.time
    assert change.branch == "main"
    assert change.repository == upstream.url
    assert change.project == "hello"
    assert change.category == "ci"
    assert change.codebase == ""
    assert change.revlink == ""
    key, body = await sub.get()
    assert key == ("changes", str(change.id), "new")
    assert body["revision"] == revision
    assert await last_rev(ctx, upstream.url) == {"refs/heads/main": revision}


async def test_several_commits_are_reported_oldest_first(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    poller = make_poller(ctx, upstream.url, branches=["main"])
    await poller.poll()
    revisions = [upstream.commit(f"commit {i}") for i in range(4)]
    await poller.poll()
    got = await changes(database)
    assert [c.revision for c in got] == revisions
    assert [c.comments for c in got] == [f"commit {i}" for i in range(4)]
    # a list of branches keys the state by branch name (as Buildbot)
    assert await last_rev(ctx, upstream.url) == {"main": revisions[-1]}


async def test_a_merge_is_one_change_with_the_merged_files(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial", {"a.txt": "a\n"})
    poller = make_poller(ctx, upstream.url, branches=["main"])
    await poller.poll()
    upstream.checkout("topic", new=True)
    upstream.commit("topic 1", {"t1.txt": "1\n"})
    upstream.commit("topic 2", {"t2.txt": "2\n"})
    upstream.checkout("main")
    upstream.commit("on main", {"m.txt": "m\n"})
    upstream.git("merge", "-q", "--no-ff", "-m", "Merge topic", "topic")
    merge = upstream.head()
    await poller.poll()
    got = await changes(database)
    # --first-parent: the merge stands for the topic's commits
    assert [c.comments for c in got] == ["on main", "Merge topic"]
    assert got[-1].revision == merge
    assert sorted(got[-1].files) == ["t1.txt", "t2.txt"]


async def test_two_branches(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    upstream.checkout("dev", new=True)
    poller = make_poller(ctx, upstream.url, branches=["main", "dev"])
    await poller.poll()
    on_dev = upstream.commit("on dev")
    upstream.checkout("main")
    on_main = upstream.commit("on main")
    await poller.poll()
    assert {(c.branch, c.revision) for c in await changes(database)} == {
        ("dev", on_dev),
        ("main", on_main),
    }
    assert await last_rev(ctx, upstream.url) == {"dev": on_dev, "main": on_main}


async def test_a_commit_on_two_branches_is_reported_once(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    poller = make_poller(ctx, upstream.url, branches=["main", "release"])
    upstream.git("branch", "release")
    await poller.poll()
    shared = upstream.commit("shared")
    upstream.git("branch", "-f", "release", "main")
    await poller.poll()
    [change] = await changes(database)
    assert change.revision == shared
    # refs are handled in ls-remote's (name) order: main first
    assert change.branch == "main"


async def test_all_branches_pick_up_a_new_branch(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    upstream.commit("second")
    poller = make_poller(ctx, upstream.url, branches=True)
    await poller.poll()
    upstream.checkout("feature/x", new=True)
    new = upstream.commit("feature work")
    await poller.poll()
    # only the commit no known head contains, not the history the branch shares with main
    [change] = await changes(database)
    assert (change.branch, change.revision) == ("feature/x", new)
    state = await last_rev(ctx, upstream.url)
    assert state == {"refs/heads/feature/x": new, "refs/heads/main": upstream.head("main")}


async def test_a_detached_remote_head_is_watched_as_head(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    upstream.git("checkout", "-q", "--detach")
    poller = make_poller(ctx, upstream.url)
    await poller.poll()
    new = upstream.commit("detached work")
    await poller.poll()
    [change] = await changes(database)
    assert (change.branch, change.revision) == ("HEAD", new)
    assert await last_rev(ctx, upstream.url) == {"HEAD": new}


async def test_a_deleted_branch_leaves_the_state(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    upstream.git("branch", "gone")
    poller = make_poller(ctx, upstream.url, branches=True)
    await poller.poll()
    upstream.git("branch", "-D", "gone")
    await poller.poll()
    assert await last_rev(ctx, upstream.url) == {"refs/heads/main": upstream.head()}
    assert await changes(database) == []


async def test_a_callable_chooses_the_refs(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    upstream.git("branch", "release/1.0")
    upstream.git("branch", "wip")
    seen: list[str] = []

    def releases(ref: str) -> bool:
        seen.append(ref)
        return ref.startswith("refs/heads/release/")

    poller = make_poller(ctx, upstream.url, branches=releases)
    await poller.poll()
    assert "refs/heads/wip" in seen
    upstream.checkout("wip")
    upstream.commit("not watched")
    upstream.checkout("release/1.0")
    fix = upstream.commit("release fix")
    await poller.poll()
    [change] = await changes(database)
    assert (change.branch, change.revision) == ("release/1.0", fix)


async def test_only_tags(ctx: ChangeSourceContext, database: Database, upstream: Upstream) -> None:
    upstream.commit("initial")
    upstream.git("tag", "v1")
    poller = make_poller(ctx, upstream.url, only_tags=True)
    await poller.poll()
    upstream.commit("untagged")
    await poller.poll()
    assert await changes(database) == []  # a branch moving is not watched
    tagged = upstream.commit("release 2")
    upstream.git("tag", "-a", "-m", "version 2", "v2")
    await poller.poll()
    got = await changes(database)
    # the commits since the known tags, on the tag's full ref name (as Buildbot)
    assert [(c.branch, c.comments) for c in got] == [
        ("refs/tags/v2", "untagged"),
        ("refs/tags/v2", "release 2"),
    ]
    assert got[-1].revision == tagged


async def test_push_without_commits_builds_when_asked(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    head = upstream.commit("initial")
    upstream.git("tag", "v1")
    poller = make_poller(ctx, upstream.url, only_tags=True, buildPushesWithNoCommits=True)
    await poller.poll()
    upstream.git("tag", "v1.0.1", head)  # a new tag on a known commit
    await poller.poll()
    [change] = await changes(database)
    assert (change.branch, change.revision) == ("refs/tags/v1.0.1", head)


async def test_push_without_commits_is_silent_by_default(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    poller = make_poller(ctx, upstream.url, branches=True)
    await poller.poll()
    upstream.git("branch", "copy")
    await poller.poll()
    assert await changes(database) == []
    assert "refs/heads/copy" in await last_rev(ctx, upstream.url)


async def test_category_callable_and_no_timestamps(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream, clock: FakeClock
) -> None:
    upstream.commit("initial")
    given: list[dict[str, Any]] = []

    def category(change: dict[str, Any]) -> str:
        given.append(change)
        return f"cat-{change['branch']}"

    poller = make_poller(ctx, upstream.url, category=category, usetimestamps=False)
    await poller.poll()
    revision = upstream.commit("second", {"x.txt": "x\n"})
    await poller.poll()
    [change] = await changes(database)
    assert change.category == "cat-main"
    assert change.when_timestamp == int(clock.now())  # when it was recorded
    [seen] = given
    assert seen["revision"] == revision
    assert seen["files"] == ["x.txt"]
    assert seen["author"] == AUTHOR
    assert seen["when_timestamp"] is None


async def test_non_ascii_file_names_and_comments(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    poller = make_poller(ctx, upstream.url)
    await poller.poll()
    upstream.commit("Café crème ☕", {"dir/é f.txt": "x\n", 'q"uote.txt': "y\n"})
    await poller.poll()
    [change] = await changes(database)
    assert change.comments == "Café crème ☕"
    assert sorted(change.files) == ["dir/é f.txt", 'q"uote.txt']


# -- what a poll remembers ------------------------------------------------------------------------


async def test_restart_neither_repeats_nor_misses(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    first = make_poller(ctx, upstream.url, branches=["main"])
    await first.poll()
    before = upstream.commit("before the restart")
    await first.poll()
    # the master is down while these land
    while_down = [upstream.commit("while down 1"), upstream.commit("while down 2")]
    second = make_poller(ctx, upstream.url, branches=["main"])
    await second.poll()
    await second.poll()
    assert [c.revision for c in await changes(database)] == [before, *while_down]


async def test_history_rewrite_reports_the_new_commits(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    base = upstream.commit("base")
    upstream.commit("to be dropped 1")
    upstream.commit("to be dropped 2")
    poller = make_poller(ctx, upstream.url)
    await poller.poll()
    upstream.git("reset", "-q", "--hard", base)
    rewritten = upstream.commit("rewritten")
    await poller.poll()
    # what the new head has that the old one had not (Buildbot's rule); no failure
    assert [c.revision for c in await changes(database)] == [rewritten]
    assert await last_rev(ctx, upstream.url) == {"refs/heads/main": rewritten}


async def test_two_pollers_share_the_workdir(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream, tmp_path: Path
) -> None:
    other = Upstream(tmp_path / "other")
    upstream.commit("initial")
    other.commit("other initial")
    a = make_poller(ctx, upstream.url)
    b = make_poller(ctx, other.url)
    await asyncio.gather(a.poll(), b.poll())
    mine = upstream.commit("mine")
    theirs = other.commit("theirs")
    await a.poll()
    await b.poll()
    assert {(c.repository, c.revision) for c in await changes(database)} == {
        (upstream.url, mine),
        (other.url, theirs),
    }


async def test_concurrent_polls_do_not_overlap(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    poller = make_poller(ctx, upstream.url)
    await poller.poll()
    new = upstream.commit("new")
    await asyncio.gather(poller.poll(), poller.poll(), poller.poll())
    assert [c.revision for c in await changes(database)] == [new]


# -- failures -------------------------------------------------------------------------------------


async def test_a_bad_repourl_is_logged_and_polling_goes_on(
    ctx: ChangeSourceContext, database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "not-yet"
    poller = make_poller(ctx, str(path))
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [failure] = [e for e in logs if e["event"] == "gitpoller_poll_failed"]
    assert "does not appear to be a git repository" in failure["error"]
    assert poller.statistics()["failed_polls"] == 1

    # the repository appears: the next poll works
    upstream = Upstream(path)
    upstream.commit("initial")
    await poller.poll()
    new = upstream.commit("new")
    await poller.poll()
    assert [c.revision for c in await changes(database)] == [new]
    assert poller.statistics() == {"children": 0, "tasks": 0, "polls": 3, "failed_polls": 1}


async def test_a_missing_git_is_logged(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    poller = make_poller(ctx, upstream.url, gitbin="/nonexistent/git")
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [failure] = [e for e in logs if e["event"] == "gitpoller_poll_failed"]
    assert "/nonexistent/git" in failure["error"]


async def test_an_empty_repository_is_nothing_to_watch(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    poller = make_poller(ctx, upstream.url)
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    assert [e["event"] for e in logs] == ["gitpoller_nothing_to_watch"]
    head = upstream.commit("initial")
    await poller.poll()
    assert await last_rev(ctx, upstream.url) == {"refs/heads/main": head}


async def test_a_missing_branch_is_not_an_error(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    poller = make_poller(ctx, upstream.url, branch="later")
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    assert [e["event"] for e in logs] == ["gitpoller_nothing_to_watch"]
    upstream.git("branch", "later")
    await poller.poll()
    upstream.checkout("later")
    new = upstream.commit("on later")
    await poller.poll()
    assert [(c.branch, c.revision) for c in await changes(database)] == [("later", new)]


async def test_a_failing_write_saves_what_was_written(
    ctx: ChangeSourceContext,
    database: Database,
    upstream: Upstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream.commit("initial")
    poller = make_poller(ctx, upstream.url)
    await poller.poll()
    revisions = [upstream.commit(f"c{i}") for i in range(3)]
    real = ctx.updates.add_change
    calls = 0

    async def flaky(**kwargs: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("database went away")
        return await real(**kwargs)

    monkeypatch.setattr(ctx.updates, "add_change", flaky)
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    assert "gitpoller_poll_crashed" in [e["event"] for e in logs]
    assert await last_rev(ctx, upstream.url) == {"refs/heads/main": revisions[0]}
    await poller.poll()
    assert [c.revision for c in await changes(database)] == revisions


# -- the service: schedule, force, stop -----------------------------------------------------------


def gated_git(tmp_path: Path) -> tuple[Path, Path]:
    """A ``gitbin`` that waits for a gate file before running git: a poll held open."""
    gate = tmp_path / "gate"
    script = tmp_path / "gated-git"
    script.write_text(f'#!/bin/sh\nwhile [ ! -e "{gate}" ]; do sleep 0.01; done\nexec git "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, gate


async def test_polls_every_interval(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream, clock: FakeClock
) -> None:
    upstream.commit("initial")
    poller = make_poller(ctx, upstream.url, pollInterval=60)
    await poller.start()
    try:
        await until(lambda: clock.sleepers == 1)
        assert poller.statistics()["polls"] == 0  # not at launch
        clock.advance(60)
        await until(lambda: poller.statistics()["polls"] == 1 and clock.sleepers == 1)
        new = upstream.commit("new")
        clock.advance(59)
        await asyncio.sleep(0.05)
        assert poller.statistics()["polls"] == 1
        clock.advance(1)
        await until(lambda: poller.statistics()["polls"] == 2 and clock.sleepers == 1)
        assert [c.revision for c in await changes(database)] == [new]
    finally:
        await poller.stop()


async def test_poll_at_launch_and_failures_keep_the_schedule(
    ctx: ChangeSourceContext, database: Database, clock: FakeClock, tmp_path: Path
) -> None:
    poller = make_poller(ctx, str(tmp_path / "missing"), pollInterval=30, pollAtLaunch=True)
    await poller.start()
    try:
        await until(lambda: poller.statistics()["failed_polls"] == 1 and clock.sleepers == 1)
        clock.advance(30)
        await until(lambda: poller.statistics()["failed_polls"] == 2 and clock.sleepers == 1)
    finally:
        await poller.stop()


async def test_force_during_a_poll_polls_once_more(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.commit("initial")
    gitbin, gate = gated_git(tmp_path)
    poller = make_poller(ctx, upstream.url, gitbin=str(gitbin))
    await poller.start()
    try:
        await until(lambda: poller.active)
        poller.force()
        await until(lambda: poller.statistics()["polls"] == 1)
        poller.force()  # while the first poll waits at the gate
        poller.force()
        gate.touch()
        await until(lambda: poller.statistics()["polls"] == 2)
        await asyncio.sleep(0.2)
        assert poller.statistics()["polls"] == 2
        assert poller.statistics()["failed_polls"] == 0
    finally:
        await poller.stop()


async def test_stop_during_a_poll_kills_git(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.commit("initial")
    gitbin, _gate = gated_git(tmp_path)
    poller = make_poller(ctx, upstream.url, gitbin=str(gitbin), pollInterval=600)
    await poller.start()
    await until(lambda: poller.active)
    poller.force()
    await until(lambda: poller.statistics()["polls"] == 1)
    async with asyncio.timeout(10):
        await poller.stop()
    assert poller.statistics()["tasks"] == 0
    assert await last_rev(ctx, upstream.url) is None


async def test_force_is_ignored_until_active(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    poller = make_poller(ctx, upstream.url)
    with structlog.testing.capture_logs() as logs:
        poller.force()
    assert [e["event"] for e in logs] == ["gitpoller_force_ignored"]


async def test_the_change_manager_runs_it(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream, clock: FakeClock
) -> None:
    upstream.commit("initial")
    manager = ChangeManager(ctx)
    config = GitPoller(upstream.url, pollInterval=60, pollAtLaunch=True)
    await manager.start()
    try:
        result = await manager.apply({config.name: config})
        assert result.added == (upstream.url,)
        service = manager.child(upstream.url)
        assert isinstance(service, GitPollerService)
        await until(lambda: service.statistics()["polls"] == 1 and clock.sleepers == 1)
        assert await last_rev(ctx, upstream.url) == {"refs/heads/main": upstream.head()}
        # an equal configuration leaves it alone; a new interval restarts the schedule
        again = GitPoller(upstream.url, pollInterval=60, pollAtLaunch=True)
        assert (await manager.apply({again.name: again})).unchanged == (upstream.url,)
        faster = GitPoller(upstream.url, pollInterval=10, pollAtLaunch=True)
        assert (await manager.apply({faster.name: faster})).updated == (upstream.url,)
        await until(lambda: service.statistics()["polls"] == 2 and clock.sleepers == 1)
        new = upstream.commit("new")
        clock.advance(10)
        await until(lambda: service.statistics()["polls"] == 3 and clock.sleepers == 1)
        assert [c.revision for c in await changes(database)] == [new]
    finally:
        await manager.stop()


def test_tracker_refs_are_valid_ref_names() -> None:
    assert tracker_ref("https://example.org/a.git", "refs/heads/main") == (
        "refs/buildyard/https%3A%2F%2Fexample%2Eorg%2Fa%2Egit/heads/main"
    )
    assert tracker_ref("../up", "HEAD") == "refs/buildyard-raw/%2E%2E%2Fup/HEAD"
    long = tracker_ref("x" * 500, "refs/heads/main")
    assert len(long.split("/")[2]) < 130


# -- authentication -------------------------------------------------------------------------------


async def test_ssh_key_and_host_key_reach_ssh(
    ctx: ChangeSourceContext,
    database: Database,
    upstream: Upstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # an ``ssh`` that records what git gave it and serves the repository locally
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "ssh-calls"
    fake_ssh = bindir / "ssh"
    fake_ssh.write_text(
        "#!/bin/sh\n"
        f'key=""; prev=""; for a in "$@"; do [ "$prev" = "-i" ] && key="$a"; prev="$a"; done\n'
        f'{{ echo "args: $*"; echo "key: $(cat "$key")"; }} >> "{record}"\n'
        'for last in "$@"; do :; done\n'
        'exec sh -c "$last"\n'
    )
    fake_ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    upstream.commit("initial")
    url = f"ssh://git.example.org{upstream.url}"
    poller = make_poller(
        ctx, url, sshPrivateKey="PRIVATE KEY TEXT", sshHostKey="ssh-ed25519 AAAAhost"
    )
    await poller.poll()
    assert poller.statistics()["failed_polls"] == 0
    assert await last_rev(ctx, url) == {"refs/heads/main": upstream.head()}
    calls = record.read_text()
    assert "BatchMode=yes" in calls
    assert "UserKnownHostsFile=" in calls
    assert "git.example.org" in calls
    assert "key: PRIVATE KEY TEXT" in calls
    # the key files live only for the duration of the poll
    workdir = ctx.basedir / "gitpoller-work"
    assert not list(workdir.glob(".buildyard-auth-*"))


async def test_auth_credentials_are_stored_for_the_poll_only(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    url = f"file://{upstream.url}"  # git credential wants a URL with a scheme
    poller = make_poller(ctx, url, auth_credentials=("user", "s3cret"))
    await poller.poll()
    assert poller.statistics()["failed_polls"] == 0
    assert await last_rev(ctx, url) == {"refs/heads/main": upstream.head()}
    assert not list((ctx.basedir / "gitpoller-work").glob(".buildyard-auth-*"))


async def test_credentials_left_by_a_killed_master_go_at_the_next_poll(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream
) -> None:
    upstream.commit("initial")
    url = f"file://{upstream.url}"
    workdir = ctx.basedir / "gitpoller-work"
    workdir.mkdir(parents=True)
    # a process that has ended: what a master killed mid-poll left (its key and password)
    proc = await asyncio.create_subprocess_exec("true")
    assert await proc.wait() == 0
    stale = workdir / f".buildyard-auth-{proc.pid}-x1"
    stale.mkdir()
    (stale / "ssh-key").write_text("PRIVATE KEY TEXT\n")
    # a live process's (pid 1: init) and one of this master's are someone's poll in progress
    live = [workdir / ".buildyard-auth-1-x2", workdir / f".buildyard-auth-{os.getpid()}-x3"]
    for directory in live:
        directory.mkdir()
    poller = make_poller(ctx, url, auth_credentials=("user", "s3cret"))
    await poller.poll()
    assert poller.statistics()["failed_polls"] == 0
    assert sorted(workdir.glob(".buildyard-auth-*")) == sorted(live)

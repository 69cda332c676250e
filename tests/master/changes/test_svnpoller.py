"""SVNPoller against real Subversion repositories (svnadmin create, file:// URLs, and svnserve
on loopback for username/password): what each poll reports, and what it remembers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from buildyard.common.errors import ConfigErrors, collecting_config_errors
from buildyard.master.changes.base import ChangeSourceContext
from buildyard.master.changes.manager import ChangeManager
from buildyard.master.changes.svnpoller import SVNPoller, SVNPollerService
from buildyard.master.db.connector import Database
from buildyard.master.model.changes import Change
from buildyard.plugins import util
from buildyard.testing.clock import FakeClock
from buildyard.testing.svn import SvnRepo, SvnServe, svn_available

pytestmark = pytest.mark.skipif(not svn_available(), reason="needs subversion (svn, svnadmin)")


@pytest.fixture
def repo(tmp_path: Path) -> SvnRepo:
    return SvnRepo(tmp_path / "repo")


def make_poller(ctx: ChangeSourceContext, repourl: str, **kwargs: Any) -> SVNPollerService:
    config = SVNPoller(repourl, **kwargs)
    return config.make_service(config.name, ctx)


async def changes(database: Database) -> list[Change]:
    return await database.changes.get_changes()


async def last_change(ctx: ChangeSourceContext, name: str) -> Any:
    objectid = await ctx.updates.get_object_id(name, "SVNPoller")
    return await ctx.updates.get_state(objectid, "last_change")


async def test_first_poll_records_the_last_revision_only(
    ctx: ChangeSourceContext, database: Database, repo: SvnRepo
) -> None:
    repo.commit("layout", dirs=("trunk", "branches"))
    head = repo.commit("one", {"trunk/a.c": "a\n"})
    poller = make_poller(ctx, repo.url)
    await poller.poll()
    assert await changes(database) == []
    assert await last_change(ctx, repo.url) == int(head)
    await poller.poll()
    assert await changes(database) == []
    assert poller.statistics()["failed_polls"] == 0


async def test_new_revisions_become_changes_with_buildbots_fields(
    ctx: ChangeSourceContext, database: Database, repo: SvnRepo, clock: FakeClock
) -> None:
    repo.commit("layout", dirs=("trunk/src",))
    url = f"{repo.url}/trunk/"  # the trailing slash goes, as in Buildbot
    poller = make_poller(
        ctx,
        url,
        project="hello",
        category="ci",
        revlinktmpl="https://svn.example.org/r/%s",
    )
    await poller.poll()
    clock.advance(100)
    first = repo.commit(
        "Fix the frobnicator\n\nIt frobbed twice.",
        {"trunk/src/frob.c": "int x;\n", "trunk/README": "hi\n", "elsewhere.txt": "x\n"},
        author="bob",
    )
    second = repo.commit("Remove the readme", {"trunk/README": None}, author="cy")
    await poller.poll()
    got = await changes(database)
    assert [c.revision for c in got] == [first, second]  # oldest first, as strings
    change = got[0]
    assert change.author == "bob"
    assert change.committer is None
    assert change.comments == "Fix the frobnicator\n\nIt frobbed twice."
    # relative to repourl; elsewhere.txt, outside it, is left out
    assert sorted(change.files) == ["README", "src/frob.c"]
    assert change.branch is None
    assert change.repository == f"{repo.url}/trunk"
    assert change.project == "hello"
    assert change.category == "ci"
    assert change.revlink == f"https://svn.example.org/r/{first}"
    assert change.when_timestamp == int(clock.now())  # the poll's time, as Buildbot's
    assert got[1].files == ("README",)
    assert got[1].author == "cy"
    # src="svn": the author is a user with an svn attribute
    user = await database.users.find_user_id_by_attr("bob", "svn", "bob")
    assert user is not None
    assert await last_change(ctx, url) == int(second)


async def test_split_file_branches(
    ctx: ChangeSourceContext, database: Database, repo: SvnRepo
) -> None:
    repo.commit("layout", {"trunk/a.c": "a\n"}, dirs=("branches", "tags"))
    poller = make_poller(ctx, repo.url, split_file=util.svn.split_file_branches)
    await poller.poll()
    made = repo.copy("trunk", "branches/dev", "branch dev")
    both = repo.commit(
        "on both", {"trunk/a.c": "a2\n", "branches/dev/b.c": "b\n", "branches/dev/d/e.c": "e\n"}
    )
    repo.copy("trunk", "tags/v1", "tag v1")  # tags/ is left out by split_file_branches
    gone = repo.remove("branches/dev", "drop dev")  # deleting a branch is no change
    await poller.poll()
    got = [(c.revision, c.branch, sorted(c.files)) for c in await changes(database)]
    assert got == [
        (made, "branches/dev", [""]),
        # one change per branch, in the order svn lists the paths (as Buildbot)
        (both, "branches/dev", ["b.c", "d", "d/e.c"]),
        (both, None, ["a.c"]),
    ]
    assert await last_change(ctx, repo.url) == int(gone)


async def test_split_file_dict_sets_project_and_codebase(
    ctx: ChangeSourceContext, database: Database, repo: SvnRepo
) -> None:
    repo.commit("layout", dirs=("alpha/trunk", "beta/branches/x"))
    poller = make_poller(ctx, repo.url, split_file=util.svn.split_file_projects_branches)
    await poller.poll()
    rev = repo.commit("two projects", {"alpha/trunk/a": "1", "beta/branches/x/b": "2"})

    def with_codebase(path: str) -> dict[str, str] | None:
        found = util.svn.split_file_projects_branches(path)
        return None if found is None else {**found, "codebase": f"cb-{found['project']}"}

    await poller.poll()
    assert [(c.project, c.branch, c.files, c.codebase) for c in await changes(database)] == [
        ("alpha", None, ("a",), ""),
        ("beta", "branches/x", ("b",), ""),
    ]
    poller2 = make_poller(ctx, repo.url, name="other", split_file=with_codebase)
    await poller2.poll()
    rev2 = repo.commit("again", {"alpha/trunk/a": "3"})
    await poller2.poll()
    last = (await changes(database))[-1]
    assert (last.revision, last.project, last.codebase) == (rev2, "alpha", "cb-alpha")
    assert int(rev2) > int(rev)


async def test_a_restart_reports_what_was_committed_meanwhile(
    ctx: ChangeSourceContext, database: Database, repo: SvnRepo
) -> None:
    repo.commit("layout", dirs=("trunk",))
    poller = make_poller(ctx, repo.url, pollInterval=60)
    await poller.poll()
    seen = repo.commit("before the stop", {"trunk/a": "1"})
    await poller.poll()
    # the master stops; two commits; a new master (a new service, the same database)
    missed = [repo.commit(f"while down {i}", {"trunk/a": str(i)}) for i in range(2)]
    again = make_poller(ctx, repo.url, pollInterval=60)
    await again.poll()
    assert [c.revision for c in await changes(database)] == [seen, *missed]
    await again.poll()
    assert len(await changes(database)) == 3


async def test_an_empty_repository_reports_its_first_commit(
    ctx: ChangeSourceContext, database: Database, repo: SvnRepo
) -> None:
    poller = make_poller(ctx, repo.url)
    await poller.poll()
    assert await last_change(ctx, repo.url) == 0
    first = repo.commit("first", {"a.txt": "a"})
    await poller.poll()
    assert [c.revision for c in await changes(database)] == [first]


async def test_histmax_bounds_what_one_poll_reads(
    ctx: ChangeSourceContext, database: Database, repo: SvnRepo
) -> None:
    repo.commit("start", {"a": "0"})
    poller = make_poller(ctx, repo.url, histmax=2)
    await poller.poll()
    revisions = [repo.commit(f"c{i}", {"a": str(i)}) for i in range(4)]
    await poller.poll()
    # as Buildbot: only the newest histmax revisions are read, so only those are reported
    assert [c.revision for c in await changes(database)] == revisions[-2:]


async def test_category_callable_and_extra_args(
    ctx: ChangeSourceContext, database: Database, repo: SvnRepo, tmp_path: Path
) -> None:
    repo.commit("start", {"a": "0"})
    seen: list[dict[str, Any]] = []

    def category(change: dict[str, Any]) -> str:
        seen.append(change)
        return f"by-{change['author']}"

    config_dir = tmp_path / "poller-svn-config"
    poller = make_poller(
        ctx, repo.url, category=category, extra_args=["--config-dir", str(config_dir)]
    )
    await poller.poll()
    rev = repo.commit("c", {"a": "1"}, author="dee")
    await poller.poll()
    [change] = await changes(database)
    assert change.category == "by-dee"
    assert seen[0]["revision"] == rev
    assert seen[0]["files"] == ["a"]
    assert (config_dir / "config").exists()  # svn made its configuration there


async def test_cachepath_is_written_and_seeds_an_empty_database(
    ctx: ChangeSourceContext, database: Database, repo: SvnRepo, basedir: Path
) -> None:
    repo.commit("start", {"a": "0"})
    poller = make_poller(ctx, repo.url, cachepath="svn.cache")
    await poller.poll()
    cache = basedir / "svn.cache"
    assert cache.read_text().strip() == repo.head()
    # a poller of another name (no state in the database) starts from the cache file
    missed = repo.commit("missed", {"a": "1"})
    other = make_poller(ctx, repo.url, name="other", cachepath=str(cache))
    await other.poll()
    assert [c.revision for c in await changes(database)] == [missed]
    assert cache.read_text().strip() == missed


async def test_a_corrupt_cachepath_is_named_and_not_used(
    ctx: ChangeSourceContext, database: Database, repo: SvnRepo, basedir: Path
) -> None:
    repo.commit("start", {"a": "0"})
    (basedir / "bad.cache").write_text("not a number\n")
    poller = make_poller(ctx, repo.url, cachepath="bad.cache")
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [warning] = [e for e in logs if e["event"] == "svnpoller_cachepath_unusable"]
    assert warning["cachepath"] == str(basedir / "bad.cache")
    assert await changes(database) == []  # a first poll: nothing reported
    assert (basedir / "bad.cache").read_text() == "not a number\n"  # left alone


async def test_a_failed_poll_is_logged_and_the_next_one_works(
    ctx: ChangeSourceContext, database: Database, repo: SvnRepo, tmp_path: Path
) -> None:
    poller = make_poller(ctx, (tmp_path / "nothing-here").as_uri())
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [failed] = [e for e in logs if e["event"] == "svnpoller_poll_failed"]
    assert "svn info failed" in failed["error"]
    assert poller.statistics()["failed_polls"] == 1


async def until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    """Wait for real svn processes (no fake clock drives them)."""
    async with asyncio.timeout(seconds):
        for _ in iter(int, 1):
            if condition():
                return
            await asyncio.sleep(0.01)


async def test_the_change_manager_runs_it_on_its_schedule(
    ctx: ChangeSourceContext, database: Database, repo: SvnRepo, clock: FakeClock
) -> None:
    repo.commit("start", {"a": "0"})
    manager = ChangeManager(ctx)
    config = SVNPoller(repo.url, pollInterval=60, pollAtLaunch=True)
    await manager.start()
    try:
        result = await manager.apply({config.name: config})
        assert result.added == (repo.url,)
        service = manager.child(repo.url)
        assert isinstance(service, SVNPollerService)
        await until(lambda: service.statistics()["polls"] == 1 and clock.sleepers == 1)
        new = repo.commit("new", {"a": "1"})
        clock.advance(60)
        await until(lambda: service.statistics()["polls"] == 2 and clock.sleepers == 1)
        assert [c.revision for c in await changes(database)] == [new]
        forced = repo.commit("forced", {"a": "2"})
        service.force()
        await until(lambda: service.statistics()["polls"] == 3 and clock.sleepers == 1)
        assert [c.revision for c in await changes(database)] == [new, forced]
        # an equal configuration leaves it alone; a new interval restarts the schedule
        again = SVNPoller(repo.url, pollInterval=60, pollAtLaunch=True)
        assert (await manager.apply({again.name: again})).unchanged == (repo.url,)
        faster = SVNPoller(repo.url, pollInterval=10, pollAtLaunch=True)
        assert (await manager.apply({faster.name: faster})).updated == (repo.url,)
        await until(lambda: service.statistics()["polls"] == 4 and clock.sleepers == 1)
    finally:
        await manager.stop()
    assert service.statistics()["failed_polls"] == 0


async def test_a_missing_svnbin_and_a_bad_split_file_are_named(
    ctx: ChangeSourceContext, database: Database, repo: SvnRepo, tmp_path: Path
) -> None:
    repo.commit("start", {"trunk/a": "0"})
    missing = make_poller(ctx, repo.url, svnbin=str(tmp_path / "no-svn-here"))
    with structlog.testing.capture_logs() as logs:
        await missing.poll()
    [failed] = [e for e in logs if e["event"] == "svnpoller_poll_failed"]
    assert failed["error"].startswith(f"cannot run {str(tmp_path / 'no-svn-here')!r}")

    poller = make_poller(ctx, repo.url, name="bad", split_file=lambda path: ["not", "this"])
    await poller.poll()
    repo.commit("next", {"trunk/a": "1"})
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [failed] = [e for e in logs if e["event"] == "svnpoller_poll_failed"]
    assert "split_file gave ['not', 'this'] for 'trunk/a'" in failed["error"]
    # nothing recorded, nothing lost: the revision is reported once split_file is mended
    assert await changes(database) == []
    assert await last_change(ctx, "bad") == int(repo.head()) - 1


# -- username and password, through svnserve --------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[SvnRepo, SvnServe]]:
    root = tmp_path / "served"
    root.mkdir()
    repo = SvnRepo(root / "project")
    server = SvnServe(root, {"alice": "s3cret-pw"})
    try:
        yield repo, server
    finally:
        server.stop()


async def test_username_and_password_over_svnserve(
    ctx: ChangeSourceContext, database: Database, served: tuple[SvnRepo, SvnServe]
) -> None:
    repo, server = served
    repo.commit("start", dirs=("trunk",))
    url = f"{server.url('project')}/trunk"
    secrets = {"svn-user": "alice", "svn-password": "s3cret-pw"}

    async def secret(name: str) -> str | None:
        return secrets.get(name)

    # svnuser and svnpasswd as secrets, rendered at each poll
    ctx = dataclasses.replace(ctx, secret=secret)
    poller = make_poller(
        ctx, url, svnuser=util.Secret("svn-user"), svnpasswd=util.Secret("svn-password")
    )
    await poller.poll()
    rev = repo.commit("served", {"trunk/x.c": "x"}, author="alice")
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [change] = await changes(database)
    assert (change.revision, change.files, change.repository) == (rev, ("x.c",), url)
    assert poller.statistics()["failed_polls"] == 0
    assert "s3cret-pw" not in repr(logs)


async def test_a_wrong_password_fails_the_poll_without_showing_it(
    ctx: ChangeSourceContext, database: Database, served: tuple[SvnRepo, SvnServe]
) -> None:
    repo, server = served
    repo.commit("start", dirs=("trunk",))
    poller = make_poller(ctx, server.url("project"), svnuser="alice", svnpasswd="wr0ng-pw")
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [failed] = [e for e in logs if e["event"] == "svnpoller_poll_failed"]
    assert "svn info failed" in failed["error"]
    assert "wr0ng-pw" not in repr(logs)
    assert "wr0ng-pw" not in repr(poller.config)


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repourl": None}, "SVNPoller: repourl must be given, as a non-empty string"),
        ({"split_file": "trunk"}, "SVNPoller: split_file must be a callable"),
        ({"histmax": 0}, "SVNPoller: histmax must be a positive whole number, not 0"),
        ({"pollInterval": "often"}, "SVNPoller: pollInterval must be a number of seconds"),
        # the polling sources' shared check, in Buildbot's words (as GitPoller's and HgPoller's)
        ({"pollRandomDelayMax": 700}, "max random delay must be < 600: 700"),
        ({"extra_args": "--quiet"}, "SVNPoller: extra_args must be a list of strings"),
        ({"revlinktmpl": "http://x/%d/%d"}, "SVNPoller: revlinktmpl must hold one %s"),
        ({"svnpasswd": 12}, "SVNPoller: svnpasswd must be a string or a renderable"),
        ({"cachepath": 3}, "SVNPoller: cachepath must be a file name or None"),
        ({"category": 3}, "SVNPoller: category must be a string, a callable or None"),
    ],
)
def test_config_errors_are_named(kwargs: dict[str, Any], message: str) -> None:
    arguments = {"repourl": "svn://example.org/repo", **kwargs}
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        SVNPoller(**arguments)
    assert [e.message for e in errors.errors if e.message.startswith(message)], errors.errors


def test_name_defaults_to_repourl_and_the_password_is_hidden() -> None:
    poller = SVNPoller("svn://example.org/repo/", svnuser="u", svnpasswd="hidden-pw")
    assert poller.name == "svn://example.org/repo/"
    assert poller.repourl == "svn://example.org/repo"
    assert "hidden-pw" not in repr(poller)

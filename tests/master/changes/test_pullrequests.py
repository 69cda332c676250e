"""The pull request pollers against fake GitHub and Bitbucket Cloud APIs (tests/master/changes/
fake_forges.py), over a real database: what each poll reports, what it asks, what it remembers,
and how it lives through an API that fails."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog

from buildyard.common.errors import ConfigErrors, collecting_config_errors
from buildyard.master.changes.base import ChangeSourceContext
from buildyard.master.changes.pullrequests import (
    BitbucketPullrequestPoller,
    GitHubPullrequestPoller,
    PullRequestPollerService,
    changed_files,
)
from buildyard.master.db.connector import Database
from buildyard.master.model.changes import Change
from buildyard.master.model.properties import Secret
from buildyard.testing.postgres import free_port
from tests.master.changes.fake_forges import (
    DROP,
    OWNER,
    REPO,
    FakeForges,
    FakePull,
    fake_forges,
)

_made: list[PullRequestPollerService] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _made:
        await _made.pop().close_client()


@pytest.fixture
def forge() -> Iterator[FakeForges]:
    with fake_forges() as fake:
        yield fake


def made(service: PullRequestPollerService) -> PullRequestPollerService:
    _made.append(service)
    return service


def github(ctx: ChangeSourceContext, forge: FakeForges, **kwargs: Any) -> PullRequestPollerService:
    config = GitHubPullrequestPoller(OWNER, REPO, baseURL=forge.url, **kwargs)
    return made(config.make_service(config.name, ctx))


def bitbucket(
    ctx: ChangeSourceContext, forge: FakeForges, **kwargs: Any
) -> PullRequestPollerService:
    config = BitbucketPullrequestPoller(OWNER, REPO, baseURL=forge.url + "/2.0", **kwargs)
    return made(config.make_service(config.name, ctx))


async def changes(database: Database) -> list[Change]:
    return await database.changes.get_changes()


def props(change: Change) -> dict[str, Any]:
    return {k: v[0] for k, v in change.properties.items()}


# -- GitHub ---------------------------------------------------------------------------------------


async def test_github_open_pull_request_is_one_change_with_its_fields(
    ctx: ChangeSourceContext, database: Database, forge: FakeForges
) -> None:
    pull = forge.add(
        FakePull(7, "Brighter lamp", "Makes it brighter.", "bright", files=["a.c", "b/c.h"])
    )
    poller = github(ctx, forge, token="sekrit", github_property_whitelist=["github.number"])
    await poller.poll()
    [change] = await changes(database)
    assert change.author == "Ann Author <ann@example.org>"
    assert change.committer == "Cy Committer <cy@example.org>"
    assert change.revision == pull.head_sha
    assert change.revlink == f"https://github.com/{OWNER}/{REPO}/pull/7"
    assert (
        change.comments == "GitHub Pull Request #7 (1 commits)\nBrighter lamp\nMakes it brighter."
    )
    assert change.when_timestamp == 1772360430  # 2026-03-01T10:20:30Z
    assert change.branch == "bright"
    assert change.repository == f"https://github.com/fork/{REPO}.git"
    assert change.project == f"{OWNER}/{REPO}"
    assert change.category is None
    assert sorted(change.files) == ["a.c", "b/c.h"]
    assert props(change) == {
        "pullrequesturl": f"https://github.com/{OWNER}/{REPO}/pull/7",
        "github.number": 7,
    }
    # the documented paths, each with the token
    base = f"/repos/{OWNER}/{REPO}/pulls"
    assert [r.path for r in forge.requests] == [
        base,
        f"{base}/7",
        f"{base}/7/commits",
        f"{base}/7/files",
    ]
    assert {r.authorization for r in forge.requests} == {"token sekrit"}
    # the head is remembered where Buildbot keeps it
    objectid = await ctx.updates.get_object_id(f"{OWNER}/{REPO}", "GitHubPullrequestPoller")
    assert await ctx.updates.get_state(objectid, "pull_request7") == pull.head_sha
    # Buildbot's poller says its changes come from git: the author becomes a user
    [user] = await database.users.get_users()
    assert dict(user.attributes) == {"git": "Ann Author <ann@example.org>"}


async def test_github_reports_a_pull_request_again_only_when_its_head_moves(
    ctx: ChangeSourceContext, database: Database, forge: FakeForges
) -> None:
    pull = forge.add(FakePull(3, "Fix", None, "fix"))
    poller = github(ctx, forge)
    await poller.poll()
    await poller.poll()
    assert len(await changes(database)) == 1
    second = pull.push("second")
    # a new service (a restarted master) reads the heads from the state
    again = github(ctx, forge)
    await again.poll()
    found = await changes(database)
    assert len(found) == 2 and found[1].revision == second
    # no description: no "None" in the comments (Buildbot writes "None")
    assert found[1].comments == "GitHub Pull Request #3 (2 commits)\nFix\n"
    await again.poll()
    assert len(await changes(database)) == 2


async def test_github_branches_filter_magic_link_ssh_and_category(
    ctx: ChangeSourceContext, database: Database, forge: FakeForges
) -> None:
    forge.add(FakePull(1, "Into main", "x", "one"))
    forge.add(FakePull(2, "Into stable", "x", "two", base_branch="stable"))
    forge.add(FakePull(3, "Draft", "x", "three"))
    seen: list[dict[str, Any]] = []

    def category(change: dict[str, Any]) -> str:
        seen.append(change)
        return f"pr-{change['branch'].split('/')[2]}"

    poller = github(
        ctx,
        forge,
        branches=["main"],
        pullrequest_filter=lambda pr: not pr["title"].startswith("Draft"),
        magic_link=True,
        repository_type="ssh",
        category=category,
        project="lamps",
    )
    await poller.poll()
    [change] = await changes(database)
    assert change.branch == "refs/pull/1/merge"
    assert change.repository == f"git@github.com:{OWNER}/{REPO}.git"  # the base repository
    assert change.category == "pr-1"
    assert change.project == "lamps"
    assert seen[0]["revision"] == change.revision


async def test_github_follows_every_page(
    ctx: ChangeSourceContext, database: Database, forge: FakeForges
) -> None:
    forge.page_size = 2
    for number in range(1, 6):
        forge.add(FakePull(number, f"PR {number}", "x", f"b{number}"))
    await github(ctx, forge).poll()
    assert sorted(c.branch or "" for c in await changes(database)) == [
        "b1",
        "b2",
        "b3",
        "b4",
        "b5",
    ]
    listing = [p for p in forge.paths() if p.startswith(f"/repos/{OWNER}/{REPO}/pulls?")]
    assert listing == [f"/repos/{OWNER}/{REPO}/pulls?page=2", f"/repos/{OWNER}/{REPO}/pulls?page=3"]


async def test_github_token_from_a_secret(
    ctx: ChangeSourceContext, database: Database, forge: FakeForges
) -> None:
    async def secret(name: str) -> str | None:
        return {"gh": "from-vault"}.get(name)

    forge.add(FakePull(1, "T", "x", "t"))
    poller = github(dataclasses.replace(ctx, secret=secret), forge, token=Secret("gh"))
    await poller.poll()
    assert {r.authorization for r in forge.requests} == {"token from-vault"}
    assert len(await changes(database)) == 1


@pytest.mark.parametrize(
    ("trouble", "logged"),
    [
        ((500, "oops", {}), "http 500: oops"),
        ((200, "<html>not json</html>", {}), "expected JSON"),
        ((200, '{"message": "a dict"}', {}), "expected a list"),
        (
            (
                403,
                '{"message": "API rate limit exceeded"}',
                {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1800000000"},
            ),
            "rate limited until 08:00:00 UTC (http 403)",
        ),
        ((401, '{"message": "Bad credentials"}', {}), "http 401"),
        ((200, "", {}), "expected JSON, got ''"),
        ((DROP, "", {}), "ServerDisconnectedError"),
    ],
)
async def test_github_bad_answers_are_logged_and_the_next_poll_reports(
    ctx: ChangeSourceContext,
    database: Database,
    forge: FakeForges,
    trouble: tuple[int, str, dict[str, str]],
    logged: str,
) -> None:
    forge.add(FakePull(1, "T", "x", "t"))
    poller = github(ctx, forge)
    # (aiohttp asks again, once, when a connection closes without an answer)
    forge.queued.extend([trouble] * (2 if trouble[0] == DROP else 1))
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [failure] = [e for e in logs if e["event"] == "pullrequest_poll_failed"]
    assert logged in failure["error"]
    assert failure["changesource"] == f"GitHubPullrequestPoller:{OWNER}/{REPO}"
    assert failure["poller"] == "GitHubPullrequestPoller"
    assert await changes(database) == []
    await poller.poll()
    assert len(await changes(database)) == 1
    assert poller.statistics()["failed_polls"] == 1


async def test_a_pull_request_updated_past_2038_is_stamped_now_with_a_warning(
    ctx: ChangeSourceContext, database: Database, forge: FakeForges
) -> None:
    """The database holds 32-bit epoch seconds: a time outside them is the poll's time (with
    a warning naming the poller and the value), not an exception logged on every poll."""
    forge.add(FakePull(3, "Far", "x", "far", updated="2040-01-01T00:00:00Z"))
    poller = github(ctx, forge)
    before = int(ctx.clock.now())
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [change] = await changes(database)
    assert before <= change.when_timestamp <= int(ctx.clock.now()) + 1
    assert [e for e in logs if e["log_level"] == "error"] == []
    [warning] = [e for e in logs if e["event"] == "change_time_out_of_range"]
    assert (warning["changesource"], warning["value"]) == (
        f"GitHubPullrequestPoller:{OWNER}/{REPO}",
        "2040-01-01T00:00:00Z",
    )


async def test_github_unreachable_api_is_logged(
    ctx: ChangeSourceContext, database: Database
) -> None:
    config = GitHubPullrequestPoller(OWNER, REPO, baseURL=f"http://127.0.0.1:{free_port()}")
    poller = made(config.make_service(config.name, ctx))
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [failure] = [e for e in logs if e["event"] == "pullrequest_poll_failed"]
    assert "ClientConnectorError" in failure["error"] or "Connect" in failure["error"]


async def test_github_one_pull_request_failing_does_not_stop_the_others(
    ctx: ChangeSourceContext, database: Database, forge: FakeForges
) -> None:
    forge.add(FakePull(2, "Two", "x", "two"))
    forge.add(FakePull(1, "One", "x", "one"))
    poller = github(ctx, forge)
    # the listing answers; the details of the first pull request listed (2) fail
    original = forge.answer

    def failing(path: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if path.endswith("/pulls/2/files"):
            return 502, "bad gateway", {}
        return original(path, query)

    forge.answer = failing  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    assert [c.branch for c in await changes(database)] == ["one"]
    [failure] = [e for e in logs if e["event"] == "pullrequest_failed"]
    assert failure["number"] == 2 and "http 502" in failure["error"]
    forge.answer = original  # type: ignore[method-assign]
    await poller.poll()
    assert [c.branch for c in await changes(database)] == ["one", "two"]


def test_github_config_errors() -> None:
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        GitHubPullrequestPoller(OWNER, REPO, repository_type="ftp", pollInterval="often")  # type: ignore[arg-type]
    text = str(errors)
    assert "repository_type must be one of {https, svn, git, ssh}" in text
    assert "pollInterval must be a number" in text


# -- Bitbucket Cloud -----------------------------------------------------------------------------


async def test_bitbucket_open_pull_request_is_one_change_with_its_fields(
    ctx: ChangeSourceContext, database: Database, forge: FakeForges
) -> None:
    pull = forge.add(
        FakePull(4, "Dimmer", "d", "dim", files=["lamp.c", "doc/x.md"], deleted=["old.c"])
    )
    poller = bitbucket(
        ctx, forge, auth=("ann", "app-pass"), bitbucket_property_whitelist=["bitbucket.title"]
    )
    await poller.poll()
    [change] = await changes(database)
    assert change.author == "Ann Author"
    assert change.committer is None
    assert change.revision == pull.head_sha  # the full hash, from the commit resource
    assert change.revlink == f"https://bitbucket.org/{OWNER}/{REPO}/commits/{pull.head_sha}"
    prlink = f"https://bitbucket.org/{OWNER}/{REPO}/pull-requests/4"
    assert change.comments == f"pull-request #4: Dimmer\n{prlink}"
    assert change.when_timestamp == 1772360430  # the clock time of updated_on, as UTC
    assert change.branch == "dim"
    assert change.repository == f"https://bitbucket.org/fork/{REPO}"
    assert change.project == ""
    assert sorted(change.files) == ["doc/x.md", "lamp.c"]  # not the deleted file
    assert props(change) == {"pullrequesturl": prlink, "bitbucket.title": "Dimmer"}
    base = f"/2.0/repositories/{OWNER}/{REPO}"
    assert forge.paths() == [
        f"{base}/pullrequests",
        f"{base}/pullrequests/4",
        f"{base}/commit/{pull.head_sha[:12]}",
        f"{base}/diff/{pull.head_sha}",
        f"/2.0/repositories/fork/{REPO}",
    ]
    assert {r.authorization for r in forge.requests} == {"Basic YW5uOmFwcC1wYXNz"}
    # Buildbot's Bitbucket poller says "bitbucket", which makes no user
    assert await database.users.get_users() == []
    objectid = await ctx.updates.get_object_id(f"{OWNER}/{REPO}#None", "BitbucketPullrequestPoller")
    assert await ctx.updates.get_state(objectid, "pull_request4") == pull.head_sha
    await poller.poll()
    assert len(await changes(database)) == 1
    pull.push("more")
    await poller.poll()
    assert len(await changes(database)) == 2


async def test_bitbucket_branch_filter_pages_and_no_timestamps(
    ctx: ChangeSourceContext, database: Database, forge: FakeForges, clock: Any
) -> None:
    forge.page_size = 1
    forge.add(FakePull(1, "One", "x", "one"))
    forge.add(FakePull(2, "Two", "x", "two"))
    forge.add(FakePull(3, "Three", "x", "three"))
    poller = bitbucket(
        ctx,
        forge,
        branch=["one", "three"],
        useTimestamps=False,
        pullrequest_filter=lambda pr: pr["title"] != "Three",
    )
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [change] = await changes(database)
    assert change.branch == "one"
    assert change.when_timestamp == int(clock.now())
    assert [e["number"] for e in logs if e["event"] == "pullrequest_filtered_out"] == [3]
    listing = [p for p in forge.paths() if "/pullrequests?" in p]
    assert listing == [
        f"/2.0/repositories/{OWNER}/{REPO}/pullrequests?page=2",
        f"/2.0/repositories/{OWNER}/{REPO}/pullrequests?page=3",
    ]


@pytest.mark.parametrize(
    ("trouble", "logged"),
    [
        ((503, "maintenance", {}), "http 503: maintenance"),
        ((200, "{}", {}), "the answer has no values"),
        ((429, "slow down", {"Retry-After": "60"}), "rate limited for 60 s"),
    ],
)
async def test_bitbucket_bad_answers_are_logged_and_the_next_poll_reports(
    ctx: ChangeSourceContext,
    database: Database,
    forge: FakeForges,
    trouble: tuple[int, str, dict[str, str]],
    logged: str,
) -> None:
    forge.add(FakePull(1, "T", "x", "t"))
    poller = bitbucket(ctx, forge)
    forge.queued.append(trouble)
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [failure] = [e for e in logs if e["event"] == "pullrequest_poll_failed"]
    assert logged in failure["error"]
    assert failure["changesource"] == f"{OWNER}/{REPO}"
    assert failure["poller"] == "BitbucketPullrequestPoller"
    await poller.poll()
    assert len(await changes(database)) == 1


def test_changed_files_of_a_diff() -> None:
    diff = (
        "diff --git a/new.c b/new.c\nnew file mode 100644\n--- /dev/null\n+++ b/new.c\n"
        "@@ -0,0 +1 @@\n+x\n"
        "diff --git a/gone.c b/gone.c\ndeleted file mode 100644\n--- a/gone.c\n+++ /dev/null\n"
        "@@ -1 +0,0 @@\n-x\n"
        "diff --git a/old.c b/renamed.c\n--- a/old.c\n+++ b/renamed.c\n@@ -1 +1 @@\n-a\n+b\n"
    )
    assert changed_files(diff) == ["new.c", "renamed.c"]


# -- the schedule ---------------------------------------------------------------------------------


async def test_poll_at_launch_then_every_interval(
    ctx: ChangeSourceContext, database: Database, forge: FakeForges, clock: Any
) -> None:
    import asyncio

    forge.add(FakePull(1, "T", "x", "t"))
    config = GitHubPullrequestPoller(
        OWNER, REPO, baseURL=forge.url, pollAtLaunch=True, pollInterval=60
    )
    poller = config.make_service(config.name, ctx)
    await poller.start()
    try:
        async with asyncio.timeout(30):
            while poller.statistics()["polls"] < 1 or not await changes(database):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            pull = forge.pulls[1]
            pull.push("again")
            # (advanced again until the loop, which may not sleep yet, sees its interval pass)
            while len(await changes(database)) < 2:
                clock.advance(60)
                await asyncio.sleep(0.05)
    finally:
        await poller.stop()


async def test_a_category_callable_that_raises_skips_only_that_pull_request(
    ctx: ChangeSourceContext, database: Database, forge: FakeForges
) -> None:
    forge.add(FakePull(1, "One", "x", "one"))
    forge.add(FakePull(2, "Two", "x", "two"))
    broken = {"two"}

    def category(change: dict[str, Any]) -> str:
        if change["branch"] in broken:
            raise ValueError("no category for you")
        return "fine"

    poller = github(ctx, forge, category=category)
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    assert [(c.branch, c.category) for c in await changes(database)] == [("one", "fine")]
    [failure] = [e for e in logs if e["event"] == "pullrequest_failed"]
    assert failure["number"] == 2
    broken.clear()
    await poller.poll()
    assert [c.branch for c in await changes(database)] == ["one", "two"]


# -- next page links to another server ------------------------------------------------------------


@pytest.fixture
def elsewhere() -> Iterator[FakeForges]:
    """A second fake forge on another port: where a hostile "next page" link points."""
    with fake_forges() as fake:
        yield fake


@pytest.mark.parametrize("kind", ["github", "bitbucket"])
async def test_a_next_page_link_to_another_server_is_not_followed(
    ctx: ChangeSourceContext,
    database: Database,
    forge: FakeForges,
    elsewhere: FakeForges,
    kind: str,
) -> None:
    forge.page_size = 2
    for number in range(1, 5):
        forge.add(FakePull(number, f"PR {number}", "x", f"b{number}"))
    elsewhere.add(FakePull(9, "Bait", "x", "bait"))
    forge.next_base = elsewhere.url
    if kind == "github":
        poller = github(ctx, forge, token="sekrit")
    else:
        poller = bitbucket(ctx, forge, auth=("ann", "sekrit"))
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    # the other server got nothing (so no token); the first page is reported all the same
    assert elsewhere.requests == []
    assert sorted(c.branch or "" for c in await changes(database)) == ["b3", "b4"]
    [refused] = [e for e in logs if e["event"] == "pagination_link_refused"]
    port = elsewhere.url.rsplit(":", 1)[1]
    assert refused["host"] == f"http://127.0.0.1:{port}"
    assert refused["poller"] == poller.name
    assert "sekrit" not in repr(refused)
    assert not [e for e in logs if e["event"] == "pullrequest_poll_failed"]

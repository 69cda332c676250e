"""``changes.GitHubPullrequestPoller`` and ``changes.BitbucketPullrequestPoller``: watch the open
pull requests of one repository through the forge's REST API.

Every ``pollInterval`` seconds (at once too with ``pollAtLaunch``; and on :meth:`force`, which
the ``poller`` change hook calls) one poll reads the open pull requests, page after page, and
makes one change for each pull request whose head commit is not the one it last reported. The
head last reported is kept per pull request in the state of the object Buildbot uses
(``("<owner>/<repo>", "GitHubPullrequestPoller")``, key ``pull_request<number>``;
``("<owner>/<slug>#<branch>", "BitbucketPullrequestPoller")`` for Bitbucket), so a database
Buildbot used carries over and a restarted master does not report a pull request again.

What a change holds follows Buildbot 4.3's pollers field by field (see the classes). Where we
differ, on purpose: every page of pull requests and of a pull request's files is read (Buildbot
reads the first page only: 30 pull requests on GitHub, 10 on Bitbucket); a GitHub pull request
without a description has no ``None`` in the comments; the head is recorded only once its change
is written (Buildbot records it first, so a failure part way loses that pull request for good).

A poll that fails (the API unreachable, answering 4xx/5xx, something not JSON or not shaped as
documented, a rate limit) is logged with the poller's name and what went wrong; nothing is
recorded for it and the next poll, at the next interval, tries again. A pull request whose
details cannot be read is logged and skipped: the others of the poll are reported.

May import: buildyard.master.data (through changes.base), the hooks' helpers, buildyard.common.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from buildyard.common.errors import config_error
from buildyard.common.httpclient import HttpClient, HttpError, Response, host_of
from buildyard.master.changes.base import ChangeSource, ChangeSourceConfig, ChangeSourceContext
from buildyard.master.changes.hooks.base import (
    PullRequestProperties,
    change_arguments,
    storable_time,
)
from buildyard.master.model.properties import (
    Properties,
    RenderError,
    SecretsOnly,
    is_renderable,
    render,
)

__all__ = [
    "BitbucketPullrequestPoller",
    "GitHubPullrequestPoller",
    "PullRequestPollerService",
]

log = structlog.get_logger(__name__)

GITHUB_API = "https://api.github.com"
BITBUCKET_API = "https://api.bitbucket.org/2.0"
# the repository address a GitHub change carries, by repository_type
GITHUB_LINKS = {"https": "clone_url", "svn": "svn_url", "git": "git_url", "ssh": "ssh_url"}
# at most this many pages of one listing per poll (100 pull requests a page at most)
MAX_PAGES = 50


class PollError(Exception):
    """What made a poll (or one pull request) fail, in words for the log."""


def _number(label: str, keyword: str, value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    config_error(f"{label}: {keyword} must be a number of seconds >= 0")
    return default


def _strings(label: str, keyword: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    config_error(f"{label}: {keyword} must be a list of strings")
    return None


def _filter(label: str, value: Any) -> Callable[[Any], bool] | bool:
    if callable(value) or isinstance(value, bool):
        return value  # type: ignore[no-any-return]
    config_error(f"{label}: pullrequest_filter must be True, False or a callable")
    return True


def _category(label: str, value: Any) -> str | Callable[[dict[str, Any]], Any] | None:
    if value is None or isinstance(value, str) or callable(value):
        return value  # type: ignore[no-any-return]
    config_error(f"{label}: category must be a string, a callable or None")
    return None


def _text_or_secret(label: str, keyword: str, value: Any) -> Any:
    if value is None or isinstance(value, str) or is_renderable(value):
        return value
    config_error(f"{label}: {keyword} must be a string or a secret (util.Secret)")
    return None


class _PollerConfig(ChangeSourceConfig):
    """What both pollers share: the schedule, the filter, the category and project."""

    label: str
    poll_interval: float
    poll_at_launch: bool
    category: str | Callable[[dict[str, Any]], Any] | None
    pullrequest_filter: Callable[[Any], bool] | bool
    property_whitelist: list[str]

    def _common(
        self,
        pollInterval: Any,
        pollAtLaunch: Any,
        category: Any,
        pullrequest_filter: Any,
        whitelist_keyword: str,
        whitelist: Any,
    ) -> None:
        self.poll_interval = _number(self.label, "pollInterval", pollInterval, 600.0)
        self.poll_at_launch = bool(pollAtLaunch)
        self.category = _category(self.label, category)
        self.pullrequest_filter = _filter(self.label, pullrequest_filter)
        self.property_whitelist = _strings(self.label, whitelist_keyword, whitelist) or []

    def accepts(self, pull: Any) -> bool:
        chosen = self.pullrequest_filter
        return bool(chosen(pull)) if callable(chosen) else chosen


class GitHubPullrequestPoller(_PollerConfig):
    """Buildbot's ``changes.GitHubPullrequestPoller(owner, repo, ...)``.

    Each change: ``author`` and ``committer`` of the pull request's first commit, ``revision``
    the head commit, ``revlink`` and property ``pullrequesturl`` the pull request's page,
    ``comments`` "GitHub Pull Request #N (K commits)", the title and the description, the time
    of its last update, ``branch`` the head branch (``refs/pull/N/merge`` with ``magic_link``),
    ``repository`` the head repository's address of ``repository_type`` (the base repository's
    with ``magic_link``), ``project`` the base repository's full name unless given, the files of
    the pull request, and the ``github.*`` fields that ``github_property_whitelist`` names.
    ``branches`` keeps the pull requests into those base branches; ``pullrequest_filter`` is
    given each pull request of the listing. ``token`` (a string or ``util.Secret``) goes in an
    ``Authorization: token ...`` header.
    """

    label = "GitHubPullrequestPoller"
    _secret_arguments = frozenset({"token"})

    def __init__(
        self,
        owner: str,
        repo: str,
        *,
        branches: Sequence[str] | None = None,
        pollInterval: float = 10 * 60,
        category: str | Callable[[dict[str, Any]], Any] | None = None,
        project: str | None = None,
        baseURL: str | None = None,
        pullrequest_filter: bool | Callable[[Any], bool] = True,
        token: Any = None,
        pollAtLaunch: bool = False,
        magic_link: bool = False,
        repository_type: str = "https",
        github_property_whitelist: Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        given: dict[str, Any] = dict(locals())
        for keyword in ("owner", "repo"):
            if not (isinstance(given[keyword], str) and given[keyword]):
                config_error(f"{self.label}: {keyword} must be a non-empty string")
        self.owner = str(owner)
        self.repo = str(repo)
        self.name = name if isinstance(name, str) and name else f"{self.label}:{owner}/{repo}"
        self.branches = _strings(self.label, "branches", given["branches"])
        self._common(
            given["pollInterval"],
            pollAtLaunch,
            given["category"],
            given["pullrequest_filter"],
            "github_property_whitelist",
            given["github_property_whitelist"],
        )
        self.project = project if isinstance(project, str) else None
        if given["project"] is not None and not isinstance(given["project"], str):
            config_error(f"{self.label}: project must be a string or None")
        url = baseURL if isinstance(baseURL, str) and baseURL else GITHUB_API
        if given["baseURL"] is not None and not isinstance(given["baseURL"], str):
            config_error(f"{self.label}: baseURL must be a string")
        self.base_url = url.rstrip("/")
        if repository_type not in GITHUB_LINKS:
            config_error("repository_type must be one of {https, svn, git, ssh}")
        self.repository_link = GITHUB_LINKS.get(str(repository_type), "clone_url")
        self.magic_link = bool(magic_link)
        self.token = _text_or_secret(self.label, "token", given["token"])

    def make_service(self, name: str, ctx: ChangeSourceContext) -> PullRequestPollerService:
        return GitHubPollerService(name, self, ctx)


class BitbucketPullrequestPoller(_PollerConfig):
    """Buildbot's ``changes.BitbucketPullrequestPoller(owner, slug, ...)`` for Bitbucket Cloud.

    Its name is always ``"<owner>/<slug>"`` (as in Buildbot). Each change: ``author`` the pull
    request author's display name, no ``committer``, ``revision`` the full hash of the source
    commit, ``revlink`` that commit's page, ``comments`` "pull-request #N: <title>" and the pull
    request's page (also property ``pullrequesturl``), the time of its last update (its clock
    time as UTC, as Buildbot reads it; now with ``useTimestamps=False``), ``branch`` the source
    branch, ``repository`` the source repository's page, the files the commit's diff adds or
    changes, and the ``bitbucket.*`` fields that ``bitbucket_property_whitelist`` names.
    ``branch`` (a name or a list) keeps the pull requests from those source branches;
    ``pullrequest_filter`` is given each pull request's own resource. ``auth`` is a
    (username, app password) pair, strings or secrets, sent as HTTP basic authentication.
    ``baseURL`` is ours (Buildbot always asks api.bitbucket.org): the API's root address.
    """

    label = "BitbucketPullrequestPoller"
    _secret_arguments = frozenset({"auth"})

    def __init__(
        self,
        owner: str,
        slug: str,
        *,
        branch: str | Sequence[str] | None = None,
        pollInterval: float = 10 * 60,
        useTimestamps: bool = True,
        category: str | Callable[[dict[str, Any]], Any] | None = None,
        project: str = "",
        pullrequest_filter: bool | Callable[[Any], bool] = True,
        pollAtLaunch: bool = False,
        auth: tuple[Any, Any] | None = None,
        bitbucket_property_whitelist: Sequence[str] | None = None,
        baseURL: str | None = None,
    ) -> None:
        given: dict[str, Any] = dict(locals())
        for keyword in ("owner", "slug"):
            if not (isinstance(given[keyword], str) and given[keyword]):
                config_error(f"{self.label}: {keyword} must be a non-empty string")
        self.owner = str(owner)
        self.slug = str(slug)
        self.name = f"{owner}/{slug}"
        self.branch = _strings(self.label, "branch", given["branch"])
        # the state's object name, as Buildbot spells it (its branch argument as Python prints it)
        self.state_name = f"{owner}/{slug}#{branch}"
        self._common(
            given["pollInterval"],
            pollAtLaunch,
            given["category"],
            given["pullrequest_filter"],
            "bitbucket_property_whitelist",
            given["bitbucket_property_whitelist"],
        )
        self.use_timestamps = bool(useTimestamps)
        self.project = project if isinstance(project, str) else ""
        if not isinstance(given["project"], str):
            config_error(f"{self.label}: project must be a string")
        self.auth: tuple[Any, Any] | None = None
        pair = given["auth"]
        if pair is not None:
            if (
                isinstance(pair, list | tuple)
                and len(pair) == 2
                and all(isinstance(a, str) or is_renderable(a) for a in pair)
            ):
                self.auth = (pair[0], pair[1])
            else:
                config_error(f"{self.label}: auth must be a (username, password) pair")
        if given["baseURL"] is not None and not isinstance(given["baseURL"], str):
            config_error(f"{self.label}: baseURL must be a string")
        self.base_url = (baseURL if isinstance(baseURL, str) and baseURL else BITBUCKET_API).rstrip(
            "/"
        )

    def make_service(self, name: str, ctx: ChangeSourceContext) -> PullRequestPollerService:
        return BitbucketPollerService(name, self, ctx)


# -- the running pollers ----------------------------------------------------------------------


def _field(payload: Any, *path: str | int) -> Any:
    """``payload[path[0]][path[1]]...``; a :class:`PollError` naming the path if absent."""
    node = payload
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            shown = ".".join(str(p) for p in path)
            raise PollError(f"the answer has no {shown}") from None
    return node


def _utc_epoch(text: Any, pattern: str) -> int:
    try:
        moment = datetime.datetime.strptime(str(text), pattern)
    except ValueError:
        raise PollError(f"unreadable time {text!r}") from None
    return calendar.timegm(moment.utctimetuple())


_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class PullRequestPollerService(ChangeSource):
    """A pull request poller at work: the poll loop, the per pull request state, the log."""

    config: _PollerConfig
    state_class = ""
    # the "src" of its changes, as Buildbot's poller gives it ("git" makes users of authors)
    change_src = ""

    def __init__(self, name: str, config: _PollerConfig, ctx: ChangeSourceContext) -> None:
        super().__init__(name, config, ctx)
        self._poll_lock = asyncio.Lock()
        self._forced = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._objectid: int | None = None
        self._client: HttpClient | None = None
        self.polls = 0
        self.failed_polls = 0

    # -- schedule ------------------------------------------------------------------------------

    async def activate(self) -> None:
        self._loop = self.spawn(self._poll_loop(), name="poll")

    async def stop_service(self) -> None:
        await self.close_client()
        await super().stop_service()

    async def close_client(self) -> None:
        """Close the HTTP connections (the next poll opens new ones)."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def reconfigure(self, config: Any) -> None:
        async with self._poll_lock:
            self.config = config
            self._objectid = None
            await self.close_client()

    def force(self) -> None:
        """Poll as soon as possible (ignored while another master runs this source)."""
        if self._loop is None or self._loop.done():
            self.log.info("pullrequest_poller_force_ignored")
            return
        self._forced.set()

    def statistics(self) -> dict[str, int]:
        return {**super().statistics(), "polls": self.polls, "failed_polls": self.failed_polls}

    async def _poll_loop(self) -> None:
        first = True
        while True:
            if not (first and self.config.poll_at_launch):
                await self._sleep_unless_forced(self.config.poll_interval)
            first = False
            self._forced.clear()
            await self.poll()

    async def _sleep_unless_forced(self, seconds: float) -> None:
        if self._forced.is_set():
            return
        sleeping = asyncio.ensure_future(self.ctx.clock.sleep(seconds))
        forced = asyncio.ensure_future(self._forced.wait())
        try:
            _ = await asyncio.wait([sleeping, forced], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeping, forced):
                _ = task.cancel()
            _ = await asyncio.gather(sleeping, forced, return_exceptions=True)

    # -- one poll ------------------------------------------------------------------------------

    async def poll(self) -> None:
        """Poll now (after the poll under way). Failures are logged, never raised."""
        async with self._poll_lock:
            self.polls += 1
            try:
                await self._poll()
            except (PollError, HttpError, RenderError) as exc:
                self.failed_polls += 1
                self.log.warning("pullrequest_poll_failed", error=str(exc))
            except Exception:
                self.failed_polls += 1
                self.log.exception("pullrequest_poll_crashed")

    @property
    def log(self) -> Any:
        """The log, each line naming this poller (its change source name and class)."""
        return log.bind(changesource=self.name, poller=self.config.label)

    async def _poll(self) -> None:
        raise NotImplementedError

    async def _http(self) -> HttpClient:
        if self._client is None:
            self._client = await self._make_client()
        return self._client

    async def _make_client(self) -> HttpClient:
        raise NotImplementedError

    async def _render(self, value: Any) -> Any:
        props = Properties()
        props.build = SecretsOnly(self.ctx.secret)
        return await render(value, props)

    async def _get(self, path: str, *, expect_json: bool = True) -> tuple[Any, Response]:
        """GET ``path``: its JSON (or text); a :class:`PollError` for anything but a 2xx."""
        client = await self._http()
        answer = await client.get(path)
        if not answer.ok:
            raise PollError(self._refusal(path, answer))
        if not expect_json:
            return answer.text, answer
        try:
            return answer.json(), answer
        except HttpError as exc:
            raise PollError(f"GET {path.partition('?')[0]}: {exc}") from None

    async def _next_page(self, link: str | None) -> str | None:
        """The next page's address to follow, or None: none given, or one on another server
        (scheme, host or port other than base_url's), which is not followed, since the
        poller's token would go with it; the log names that server."""
        if link is None or not link.startswith(("http://", "https://")):
            return link
        client = await self._http()
        if client.same_origin(link):
            return link
        self.log.warning(
            "pagination_link_refused",
            poller=self.name,
            host=host_of(link),
            base=host_of(client.base_url),
            reason="the next page is on another server; paging stops there",
        )
        return None

    def _refusal(self, path: str, answer: Response) -> str:
        where = path.partition("?")[0]
        remaining = answer.headers.get("x-ratelimit-remaining")
        if answer.status in (403, 429) and (remaining == "0" or "retry-after" in answer.headers):
            reset = answer.headers.get("x-ratelimit-reset")
            until = ""
            if reset and reset.isdigit():
                moment = datetime.datetime.fromtimestamp(int(reset), datetime.UTC)
                until = f" until {moment:%H:%M:%S} UTC"
            elif "retry-after" in answer.headers:
                until = f" for {answer.headers['retry-after']} s"
            return (
                f"GET {where}: rate limited{until} (http {answer.status}); trying again next poll"
            )
        detail = answer.text[:200].strip()
        return f"GET {where}: http {answer.status}" + (f": {detail}" if detail else "")

    async def _state_id(self) -> int:
        if self._objectid is None:
            self._objectid = await self.ctx.updates.get_object_id(
                self._state_name(), self.state_class
            )
        return self._objectid

    def _state_name(self) -> str:
        raise NotImplementedError

    async def _reported(self, number: int) -> str | None:
        value = await self.ctx.updates.get_state(
            await self._state_id(), f"pull_request{number}", None
        )
        return value if isinstance(value, str) else None

    async def _record(self, number: int, revision: str, change: dict[str, Any]) -> None:
        """Write the change, then the head it covers. A change that cannot be made (a
        ``category`` callable that raises, ...) is logged; the next poll tries again."""
        try:
            arguments = change_arguments(change)
        except Exception:
            self.log.exception("pullrequest_failed", number=number)
            return
        await self.ctx.updates.add_change(**arguments, src=self.change_src)
        await self.ctx.updates.set_state(await self._state_id(), f"pull_request{number}", revision)
        self.log.info("pullrequest_change", number=number, revision=revision)

    def _when(self, text: Any, pattern: str) -> int | None:
        """The forge's time as epoch seconds; None (the change is stamped now, with a
        warning) for one the database cannot hold, rather than failing on every poll."""
        return storable_time(_utc_epoch(text, pattern), text, changesource=self.name)

    @staticmethod
    def _is_new(reported: str | None, revision: str) -> bool:
        # Buildbot compares the first 12 characters (Bitbucket lists short hashes)
        return not reported or reported[:12] != revision[:12]

    def _properties(self, basename: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        extractor = PullRequestProperties()
        extractor.property_basename = basename
        extractor.external_property_whitelist = self.config.property_whitelist
        return extractor.extractProperties(payload)


class GitHubPollerService(PullRequestPollerService):
    config: GitHubPullrequestPoller
    state_class = "GitHubPullrequestPoller"
    change_src = "git"

    def _state_name(self) -> str:
        return f"{self.config.owner}/{self.config.repo}"

    async def _make_client(self) -> HttpClient:
        config = self.config
        headers = {"User-Agent": "buildyard", "Accept": "application/vnd.github+json"}
        if config.token is not None:
            token = await self._render(config.token)
            headers["Authorization"] = f"token {token}"
        return HttpClient(config.base_url, headers=headers, retry_delays=(), who=self.name)

    async def _pages(self, path: str) -> list[Any]:
        """Every item of a paged listing, following the ``Link: <...>; rel="next"`` headers."""
        items: list[Any] = []
        next_path: str | None = path
        for _ in range(MAX_PAGES):
            if next_path is None:
                break
            page, answer = await self._get(next_path)
            if not isinstance(page, list):
                raise PollError(f"GET {next_path.partition('?')[0]}: expected a list")
            items += page
            found = _NEXT_LINK.search(answer.headers.get("link", ""))
            next_path = await self._next_page(found.group(1) if found else None)
        return items

    async def _poll(self) -> None:
        config = self.config
        base = f"/repos/{config.owner}/{config.repo}/pulls"
        pulls = await self._pages(base)
        for pull in pulls:
            try:
                number = int(_field(pull, "number"))
                revision = str(_field(pull, "head", "sha"))
                base_branch = _field(pull, "base", "ref")
            except (PollError, TypeError, ValueError) as exc:
                raise PollError(
                    f"a pull request of the listing is not as documented: {exc}"
                ) from None
            if config.branches is not None and base_branch not in config.branches:
                continue
            if not config.accepts(pull):
                continue
            if not self._is_new(await self._reported(number), revision):
                continue
            try:
                change = await self._change(base, number, revision)
            except (PollError, HttpError, RenderError) as exc:
                self.log.warning("pullrequest_failed", number=number, error=str(exc))
                continue
            await self._record(number, revision, change)

    async def _change(self, base: str, number: int, revision: str) -> dict[str, Any]:
        config = self.config
        pull, _ = await self._get(f"{base}/{number}")
        commits = await self._pages(f"{base}/{number}/commits")
        files = await self._pages(f"{base}/{number}/files")
        if config.magic_link:
            branch = f"refs/pull/{number}/merge"
            repository = _field(pull, "base", "repo", config.repository_link)
        else:
            branch = _field(pull, "head", "ref")
            repository = _field(pull, "head", "repo", config.repository_link)
        first = _field(commits, 0, "commit")
        author = f"{_field(first, 'author', 'name')} <{_field(first, 'author', 'email')}>"
        committer = f"{_field(first, 'committer', 'name')} <{_field(first, 'committer', 'email')}>"
        count = _field(pull, "commits")
        body = pull.get("body")
        revlink = _field(pull, "html_url")
        return {
            "author": author,
            "committer": committer,
            "revision": revision,
            "revlink": revlink,
            # "(1 commits)" as Buildbot writes it; an empty description stays empty
            "comments": f"GitHub Pull Request #{number} ({count} commit"
            f"{'s' if isinstance(count, int) and count > 0 else ''})\n"
            f"{_field(pull, 'title')}\n{'' if body is None else body}",
            "when_timestamp": self._when(_field(pull, "updated_at"), "%Y-%m-%dT%H:%M:%SZ"),
            "branch": branch,
            "category": config.category,
            "project": config.project
            if config.project is not None
            else _field(pull, "base", "repo", "full_name"),
            "repository": repository,
            "files": [str(_field(f, "filename")) for f in files],
            "properties": {"pullrequesturl": revlink, **self._properties("github", pull)},
        }


class BitbucketPollerService(PullRequestPollerService):
    config: BitbucketPullrequestPoller
    state_class = "BitbucketPullrequestPoller"
    change_src = "bitbucket"

    def _state_name(self) -> str:
        return self.config.state_name

    async def _make_client(self) -> HttpClient:
        config = self.config
        auth = None
        if config.auth is not None:
            user, password = await self._render(list(config.auth))
            auth = (str(user), str(password))
        return HttpClient(
            config.base_url,
            headers={"Accept": "application/json"},
            auth=auth,
            retry_delays=(),
            who=self.name,
        )

    async def _poll(self) -> None:
        config = self.config
        path: str | None = f"/repositories/{config.owner}/{config.slug}/pullrequests"
        pulls: list[Any] = []
        for _ in range(MAX_PAGES):
            if path is None:
                break
            page, _answer = await self._get(path)
            values = _field(page, "values")
            if not isinstance(values, list):
                raise PollError("the answer's values is not a list")
            pulls += values
            following = page.get("next")
            path = await self._next_page(
                following if isinstance(following, str) and following else None
            )
        for pull in pulls:
            try:
                number = int(_field(pull, "id"))
                branch = str(_field(pull, "source", "branch", "name"))
                short = str(_field(pull, "source", "commit", "hash"))
            except (PollError, TypeError, ValueError) as exc:
                raise PollError(
                    f"a pull request of the listing is not as documented: {exc}"
                ) from None
            if config.branch and branch not in config.branch:
                continue
            if not self._is_new(await self._reported(number), short):
                continue
            try:
                found = await self._change(pull, number, branch)
            except (PollError, HttpError, RenderError) as exc:
                self.log.warning("pullrequest_failed", number=number, error=str(exc))
                continue
            if found is None:
                self.log.info("pullrequest_filtered_out", number=number)
                continue
            revision, change = found
            await self._record(number, revision, change)

    async def _change(
        self, pull: Mapping[str, Any], number: int, branch: str
    ) -> tuple[str, dict[str, Any]] | None:
        config = self.config
        details, _ = await self._get(str(_field(pull, "links", "self", "href")))
        if not config.accepts(details):
            return None
        prlink = _field(pull, "links", "html", "href")
        if config.use_timestamps:
            updated = str(_field(pull, "updated_on")).split(".")[0]
            when = self._when(updated, "%Y-%m-%dT%H:%M:%S")
        else:
            when = int(self.ctx.clock.now())
        commit, _ = await self._get(str(_field(pull, "source", "commit", "links", "self", "href")))
        revision = str(_field(commit, "hash"))
        diff, _ = await self._get(str(_field(commit, "links", "diff", "href")), expect_json=False)
        repo, _ = await self._get(
            str(_field(pull, "source", "repository", "links", "self", "href"))
        )
        return revision, {
            "author": _field(pull, "author", "display_name"),
            "committer": None,
            "revision": revision,
            "revlink": _field(commit, "links", "html", "href"),
            "comments": f"pull-request #{number}: {_field(pull, 'title')}\n{prlink}",
            "when_timestamp": when,
            "branch": branch,
            "category": config.category,
            "project": config.project,
            "repository": _field(repo, "links", "html", "href"),
            "files": changed_files(diff),
            "properties": {"pullrequesturl": prlink, **self._properties("bitbucket", pull)},
        }


def changed_files(diff: str) -> list[str]:
    """The files a git diff adds or changes (not those it deletes), by their new name."""
    files: list[str] = []
    source: str | None = None
    for line in diff.splitlines():
        if line.startswith("--- "):
            source = line[4:].split("\t")[0]
        elif line.startswith("+++ ") and source is not None:
            target = line[4:].split("\t")[0]
            if target != "/dev/null":
                name = target.strip('"')
                files.append(name[2:] if name.startswith("b/") else name)
            source = None
    return files

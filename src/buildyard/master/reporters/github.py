"""``reporters.GitHubStatusPush`` and ``reporters.GitHubCommentPush``.

GitHubStatusPush sets a commit status (``POST /repos/{owner}/{repo}/statuses/{sha}`` with
``state``, ``target_url``, ``description``, ``context``) for each source stamp of the build that
has a revision and names a GitHub repository (``project`` "owner/repo", else the repository
URL). By default: ``pending`` when the request is submitted ("Build pending.") and when the build
starts ("Build started."), then the result when it ends ("Build done."). GitHubCommentPush
comments on the pull request (``POST /repos/{owner}/{repo}/issues/{n}/comments``) a build of
``refs/pull/<n>/head`` (or ``/merge``) belongs to.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import structlog

from buildyard.common.errors import config_error
from buildyard.master.model.properties import Interpolate, Properties
from buildyard.master.model.results import Results
from buildyard.master.reporters.base import ReporterBase
from buildyard.master.reporters.details import properties_of
from buildyard.master.reporters.generators import (
    BuildStartEndStatusGenerator,
    commit_status_generators,
)
from buildyard.master.reporters.http import check_url
from buildyard.master.reporters.httpclient import RETRY_DELAYS, HttpClient
from buildyard.master.reporters.message import MessageFormatterRenderable

log = structlog.get_logger(__name__)

HOSTED_BASE_URL = "https://api.github.com"

_STATES = {
    Results.SUCCESS: "success",
    Results.WARNINGS: "success",
    Results.SKIPPED: "success",
    Results.FAILURE: "failure",
    Results.EXCEPTION: "error",
    Results.CANCELLED: "error",
    Results.RETRY: "pending",
}

_URL = re.compile(
    r"^(?:[a-z][a-z0-9+.-]*://)?(?:[^@/]+@)?(?P<host>[^:/]+)(?::(?P<port>\d+))?[:/](?P<path>.+)$"
)


def owner_and_repo(repository: str) -> tuple[str | None, str | None]:
    """``("owner", "repo")`` from a git URL (https, ssh, scp-like); owners may be nested
    groups (``group/sub``)."""
    m = _URL.match(repository.strip())
    if m is None:
        return None, None
    parts = [p for p in m.group("path").strip("/").split("/") if p]
    if len(parts) < 2:
        return None, None
    repo = parts[-1].removesuffix(".git")
    return "/".join(parts[:-1]), repo or None


def pull_request_number(branch: object) -> str | None:
    if isinstance(branch, str):
        m = re.search(r"refs/pull/([0-9]+)/(head|merge)", branch)
        if m:
            return m.group(1)
    return None


class GitHubStatusPush(ReporterBase):
    """Buildbot's arguments: ``token`` (may be a secret or a renderable), ``context`` (default
    ``Interpolate("buildbot/%(prop:buildername)s")``), ``baseURL`` (for GitHub Enterprise),
    ``verbose``, ``debug``, ``verify``, ``generators``."""

    name = "GitHubStatusPush"
    retry_delays: Sequence[float] = RETRY_DELAYS

    def checkConfig(  # type: ignore[override]
        self,
        token: Any = None,
        context: Any = None,
        baseURL: Any = None,
        verbose: bool = False,
        debug: Any = None,
        verify: Any = None,
        generators: Any = None,
        **kwargs: Any,
    ) -> None:
        owner = type(self).__name__
        if token is None or token == "":
            config_error(f"{owner}: token is required (a string, util.Secret or renderable)")
        if baseURL is not None:
            check_url(owner, "baseURL", baseURL)
        super().checkConfig(
            generators=self._default_generators() if generators is None else generators,
            **kwargs,
        )

    def _default_generators(self) -> list[Any]:
        return commit_status_generators()

    def setup_context(self, context: Any) -> Any:
        return context or Interpolate("buildbot/%(prop:buildername)s")

    async def reconfigService(  # type: ignore[override]
        self,
        token: Any = None,
        context: Any = None,
        baseURL: str | None = None,
        verbose: bool = False,
        debug: Any = None,
        verify: Any = None,
        generators: Any = None,
        **kwargs: Any,
    ) -> None:
        self.token = token
        self.verbose = verbose
        self.context = self.setup_context(context)
        super().reconfigService(
            generators=self._default_generators() if generators is None else generators,
            **kwargs,
        )
        old = getattr(self, "_http", None)
        if old is not None:
            await old.close()
        self._http = HttpClient(
            (baseURL or HOSTED_BASE_URL).rstrip("/"),
            headers={"User-Agent": "Buildbot"},
            verify=verify,
            debug=bool(debug),
            retry_delays=self.retry_delays,
            who=str(self.name),
        )

    async def stopService(self) -> None:
        await super().stopService()
        await self._http.close()

    async def _auth_header(self, props: Properties) -> dict[str, str]:
        token = await props.render(self.token)
        return {"Authorization": f"token {token}"}

    async def createStatus(
        self,
        repo_user: str,
        repo_name: str,
        sha: str,
        state: str,
        props: Properties,
        target_url: str | None = None,
        context: str | None = None,
        issue: str | None = None,
        description: str | None = None,
    ) -> Any:
        payload: dict[str, Any] = {"state": state}
        if description is not None:
            payload["description"] = description
        if target_url is not None:
            payload["target_url"] = target_url
        if context is not None:
            payload["context"] = context
        return await self._http.post(
            f"/repos/{repo_user}/{repo_name}/statuses/{sha}",
            json=payload,
            headers=await self._auth_header(props),
        )

    async def sendMessage(self, reports: Sequence[dict[str, Any]]) -> None:
        report = reports[0]
        build = report["builds"][0]
        assert self._env is not None
        props = properties_of(self._env, build)
        description = report.get("body")
        results = build.get("results")
        known = results in set(Results)
        state = "pending"
        if build.get("complete"):
            state = _STATES.get(Results(results), "error") if known else "error"
        context = await props.render(self.context)
        issue = pull_request_number(props.get_property("branch"))
        for ss in (build.get("buildset") or {}).get("sourcestamps") or []:
            project, repository = ss.get("project") or "", ss.get("repository") or ""
            if "/" in project:
                repo_owner, _, repo_name = project.partition("/")
            else:
                repo_owner, repo_name = owner_and_repo(repository) if repository else (None, None)
            where = {
                "reporter": self.name,
                "buildid": build.get("buildid"),
                "buildrequestid": (build.get("buildrequest") or {}).get("buildrequestid"),
                "builder": (build.get("builder") or {}).get("name"),
            }
            if not repo_owner or not repo_name:
                log.info(
                    "reporter_skipped", why="no GitHub repository in the source stamp", **where
                )
                continue
            sha = ss.get("revision")
            if not sha:
                log.info(
                    "reporter_skipped", why="no revision", codebase=ss.get("codebase"), **where
                )
                continue
            response = await self.createStatus(
                repo_user=repo_owner,
                repo_name=repo_name,
                sha=sha,
                state=state,
                props=props,
                target_url=build.get("url"),
                context=context,
                issue=issue,
                description=description,
            )
            if response is None:
                continue
            if not response.ok:
                log.error(
                    "reporter_push_refused",
                    state=state,
                    repository=f"{repo_owner}/{repo_name}",
                    sha=sha,
                    context=context,
                    status=response.status,
                    answer=props.redact(response.text[:500]),
                    **where,
                )
            elif self.verbose:
                log.info(
                    "reporter_status_set",
                    state=state,
                    repository=f"{repo_owner}/{repo_name}",
                    sha=sha,
                    context=context,
                    **where,
                )


class GitHubCommentPush(GitHubStatusPush):
    """Comments ``Build done.`` (by default) on the pull request the build belongs to."""

    name = "GitHubCommentPush"

    def setup_context(self, context: Any) -> Any:
        return ""

    def _default_generators(self) -> list[Any]:
        return [
            BuildStartEndStatusGenerator(
                start_formatter=MessageFormatterRenderable(None),
                end_formatter=MessageFormatterRenderable("Build done."),
            )
        ]

    async def sendMessage(self, reports: Sequence[dict[str, Any]]) -> None:
        if reports[0].get("body") is None:
            return
        await super().sendMessage(reports)

    async def createStatus(
        self,
        repo_user: str,
        repo_name: str,
        sha: str,
        state: str,
        props: Properties,
        target_url: str | None = None,
        context: str | None = None,
        issue: str | None = None,
        description: str | None = None,
    ) -> Any:
        if issue is None:
            log.info(
                "reporter_skipped",
                reporter=self.name,
                why="the build is not of a pull request (no refs/pull/<n>/ branch)",
                repository=f"{repo_user}/{repo_name}",
                sha=sha,
            )
            return None
        return await self._http.post(
            f"/repos/{repo_user}/{repo_name}/issues/{issue}/comments",
            json={"body": description},
            headers=await self._auth_header(props),
        )

"""``reporters.GitLabStatusPush``: GitLab commit statuses.

``POST /api/v4/projects/{id}/statuses/{sha}`` with ``state`` (``pending``, ``running``,
``success``, ``failed``, ``canceled``), ``ref``, ``name`` (the context), ``target_url`` and
``description``, authenticated by a ``PRIVATE-TOKEN`` header. The project id is the build's
``source_project_id`` property (GitLab's webhook sets it) or is looked up once per repository
with ``GET /api/v4/projects/{owner%2Frepo}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote_plus

import structlog

from buildyard.common.errors import config_error
from buildyard.master.model.properties import Interpolate
from buildyard.master.model.results import Results
from buildyard.master.reporters.base import ReporterBase
from buildyard.master.reporters.details import properties_of
from buildyard.master.reporters.generators import (
    commit_status_generators,
)
from buildyard.master.reporters.github import owner_and_repo
from buildyard.master.reporters.http import check_url
from buildyard.master.reporters.httpclient import RETRY_DELAYS, HttpClient, HttpError

log = structlog.get_logger(__name__)

HOSTED_BASE_URL = "https://gitlab.com"

_STATES = {
    Results.SUCCESS: "success",
    Results.WARNINGS: "success",
    Results.SKIPPED: "success",
    Results.FAILURE: "failed",
    Results.EXCEPTION: "failed",
    Results.RETRY: "pending",
    Results.CANCELLED: "canceled",
}


class GitLabStatusPush(ReporterBase):
    """Buildbot's arguments: ``token`` (may be a secret), ``context`` (default
    ``Interpolate("buildbot/%(prop:buildername)s")``), ``baseURL``, ``verbose``, ``debug``,
    ``verify``, ``generators``."""

    name = "GitLabStatusPush"
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
        if token is None or token == "":
            config_error("GitLabStatusPush: token is required (a string or util.Secret)")
        if baseURL is not None:
            check_url("GitLabStatusPush", "baseURL", baseURL)
        super().checkConfig(
            generators=self._default_generators() if generators is None else generators,
            **kwargs,
        )

    def _default_generators(self) -> list[Any]:
        return commit_status_generators()

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
        token = await self.renderSecrets(token)
        self.verbose = verbose
        self.context = context or Interpolate("buildbot/%(prop:buildername)s")
        super().reconfigService(
            generators=self._default_generators() if generators is None else generators,
            **kwargs,
        )
        old = getattr(self, "_http", None)
        if old is not None:
            await old.close()
        self.baseURL = (baseURL or HOSTED_BASE_URL).rstrip("/")
        self._http = HttpClient(
            self.baseURL,
            headers={"PRIVATE-TOKEN": str(token)},
            verify=verify,
            debug=bool(debug),
            retry_delays=self.retry_delays,
            who=str(self.name),
        )
        self.project_ids: dict[str, int] = {}

    async def stopService(self) -> None:
        await super().stopService()
        await self._http.close()

    async def createStatus(
        self,
        project_id: int,
        branch: str | None,
        sha: str,
        state: str,
        target_url: str | None = None,
        description: str | None = None,
        context: str | None = None,
    ) -> Any:
        payload: dict[str, Any] = {"state": state, "ref": branch}
        if description is not None:
            payload["description"] = description
        if target_url is not None:
            payload["target_url"] = target_url
        if context is not None:
            payload["name"] = context
        return await self._http.post(f"/api/v4/projects/{project_id}/statuses/{sha}", json=payload)

    async def getProjectId(self, sourcestamp: dict[str, Any]) -> int | None:
        owner, repo = owner_and_repo(sourcestamp.get("repository") or "")
        if owner is None or repo is None:
            return None
        full_name = quote_plus(f"{owner}/{repo}")
        if full_name not in self.project_ids:
            response = await self._http.get(f"/api/v4/projects/{full_name}")
            try:
                project = response.json()
            except HttpError:
                project = {}
            if response.status != 200 or not isinstance(project, dict) or "id" not in project:
                message = project.get("message") if isinstance(project, dict) else None
                log.error(
                    "reporter_project_unknown",
                    reporter=self.name,
                    project=f"{owner}/{repo}",
                    status=response.status,
                    answer=message or response.text[:200],
                )
                return None
            self.project_ids[full_name] = int(project["id"])
        return self.project_ids[full_name]

    async def sendMessage(self, reports: Sequence[dict[str, Any]]) -> None:
        report = reports[0]
        build = report["builds"][0]
        assert self._env is not None
        props = properties_of(self._env, build)
        results = build.get("results")
        if build.get("complete"):
            state = _STATES.get(Results(results), "failed") if results in set(Results) else "failed"
        elif build.get("started_at"):
            state = "running"
        else:
            state = "pending"
        context = await props.render(self.context)
        for ss in (build.get("buildset") or {}).get("sourcestamps") or []:
            sha = ss.get("revision")
            if props.has_property("source_project_id"):
                project_id = props.get_property("source_project_id")
            else:
                project_id = await self.getProjectId(ss)
            if project_id is None or not sha:
                continue
            branch = (
                props.get_property("source_branch")
                if props.has_property("source_branch")
                else ss.get("branch")
            )
            response = await self.createStatus(
                project_id=project_id,
                branch=branch,
                sha=sha,
                state=state,
                target_url=build.get("url"),
                context=context,
                description=report.get("body"),
            )
            if response.status not in (200, 201, 204):
                log.error(
                    "reporter_push_refused",
                    reporter=self.name,
                    state=state,
                    repository=ss.get("repository"),
                    sha=sha,
                    status=response.status,
                    answer=response.text[:500],
                    buildid=build.get("buildid"),
                    buildrequestid=(build.get("buildrequest") or {}).get("buildrequestid"),
                )
            elif self.verbose:
                log.info("reporter_status_set", reporter=self.name, state=state, sha=sha)

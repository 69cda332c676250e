"""Bitbucket Server (Data Center) reporters, with Buildbot 4.3's names and arguments.

- ``BitbucketServerStatusPush``: ``POST {base_url}/rest/build-status/1.0/commits/{sha}`` with
  ``state`` (``INPROGRESS``, ``SUCCESSFUL``, ``FAILED``), ``url``, ``key`` (the rendered
  ``key``, default the builder's name), and, when set, ``description`` (the report's body) and
  ``name`` (the rendered ``statusName``); basic auth with ``user``/``password``. Bitbucket
  answers 204.
- ``BitbucketServerCoreAPIStatusPush``: ``POST {base_url}/rest/api/1.0/projects/{key}/repos/
  {slug}/commits/{sha}/builds`` (project and slug from the repository URL's last two parts)
  with ``state``, ``url``, ``key``, ``parent``, ``ref``, ``buildNumber``, ``description``,
  ``name``, ``duration`` (ms, when finished) and ``testResults`` (from the ``tests_failed``,
  ``tests_skipped``, ``tests_successful`` properties); a bearer ``token`` or basic ``auth``.
- ``BitbucketServerPRCommentPush``: ``POST {base_url}/rest/api/1.0{path}/comments`` with
  ``text``, for the ``pullrequesturl`` property of each reported build (its path is the pull
  request's); Bitbucket answers 201.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import structlog

from buildyard.common.errors import config_error
from buildyard.master.model.properties import Interpolate, Properties
from buildyard.master.model.results import Results
from buildyard.master.reporters.base import ReporterBase
from buildyard.master.reporters.details import properties_of
from buildyard.master.reporters.generators import (
    BuildStartEndStatusGenerator,
    BuildStatusGenerator,
    commit_status_generators,
)
from buildyard.master.reporters.httpclient import RETRY_DELAYS, HttpClient, Response
from buildyard.master.reporters.message import MessageFormatterRenderable

log = structlog.get_logger(__name__)

INPROGRESS = "INPROGRESS"
SUCCESSFUL = "SUCCESSFUL"
FAILED = "FAILED"

_REPO = re.compile(r"^.*?/([^/]+)/([^/]+?)(?:\.git)?/?$")


def _epoch(value: object) -> float | None:
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


class _BitbucketServerBase(ReporterBase):
    retry_delays: Sequence[float] = RETRY_DELAYS

    async def _open(self, base_url: str, **kwargs: Any) -> None:
        old = getattr(self, "_http", None)
        if old is not None:
            await old.close()
        self._http = HttpClient(
            str(base_url).rstrip("/"),
            retry_delays=self.retry_delays,
            who=str(self.name),
            **kwargs,
        )

    async def stopService(self) -> None:
        await super().stopService()
        await self._http.close()

    def _refused(self, response: Response, build: dict[str, Any], **fields: Any) -> None:
        log.error(
            "reporter_push_refused",
            reporter=self.name,
            status=response.status,
            answer=response.text[:500],
            buildid=build.get("buildid"),
            buildrequestid=build.get("buildrequestid"),
            **fields,
        )


def _check_base_url(owner: str, base_url: object) -> None:
    if not isinstance(base_url, str) or not base_url:
        config_error(f"{owner}: base_url has to be given")


class BitbucketServerStatusPush(_BitbucketServerBase):
    """Buildbot's arguments: ``base_url``, ``user``, ``password`` (may be secrets), ``key``
    (default ``Interpolate("%(prop:buildername)s")``), ``statusName``, ``verbose``,
    ``debug``, ``verify``, ``generators``."""

    name = "BitbucketServerStatusPush"

    def checkConfig(  # type: ignore[override]
        self,
        base_url: Any = None,
        user: Any = None,
        password: Any = None,
        key: Any = None,
        statusName: Any = None,
        verbose: bool = False,
        debug: Any = None,
        verify: Any = None,
        generators: Any = None,
        **kwargs: Any,
    ) -> None:
        _check_base_url("BitbucketServerStatusPush", base_url)
        if user is None or password is None:
            config_error("BitbucketServerStatusPush: user and password are required")
        super().checkConfig(
            generators=self._default_generators() if generators is None else generators,
            **kwargs,
        )

    def _default_generators(self) -> list[Any]:
        return [
            BuildStartEndStatusGenerator(
                start_formatter=MessageFormatterRenderable("Build started."),
                end_formatter=MessageFormatterRenderable("Build done."),
            )
        ]

    async def reconfigService(  # type: ignore[override]
        self,
        base_url: Any = None,
        user: Any = None,
        password: Any = None,
        key: Any = None,
        statusName: Any = None,
        verbose: bool = False,
        debug: Any = None,
        verify: Any = None,
        generators: Any = None,
        **kwargs: Any,
    ) -> None:
        user, password = await self.renderSecrets(user, password)
        self.verbose = verbose
        self.key = key or Interpolate("%(prop:buildername)s")
        self.context = statusName
        super().reconfigService(
            generators=self._default_generators() if generators is None else generators,
            **kwargs,
        )
        await self._open(
            base_url, auth=(str(user), str(password)), verify=verify, debug=bool(debug)
        )

    async def createStatus(
        self,
        sha: str,
        state: str,
        url: str | None,
        key: str,
        description: str | None = None,
        context: str | None = None,
    ) -> Response:
        payload: dict[str, Any] = {"state": state, "url": url, "key": key}
        if description:
            payload["description"] = description
        if context:
            payload["name"] = context
        return await self._http.post(f"/rest/build-status/1.0/commits/{sha}", json=payload)

    async def sendMessage(self, reports: Sequence[dict[str, Any]]) -> None:
        report = reports[0]
        build = report["builds"][0]
        assert self._env is not None
        props = properties_of(self._env, build)
        if build.get("complete"):
            state = SUCCESSFUL if build.get("results") == Results.SUCCESS else FAILED
        else:
            state = INPROGRESS
        key = str(await props.render(self.key))
        context = str(await props.render(self.context)) if self.context else None
        for ss in (build.get("buildset") or {}).get("sourcestamps") or []:
            sha = ss.get("revision")
            if not sha:
                log.info("reporter_skipped", reporter=self.name, why="no revision")
                continue
            response = await self.createStatus(
                sha=sha,
                state=state,
                url=build.get("url"),
                key=key,
                description=report.get("body"),
                context=context,
            )
            if response.status != 204:
                self._refused(response, build, state=state, sha=sha)
            elif self.verbose:
                log.info("reporter_status_set", reporter=self.name, state=state, sha=sha)


def _test_results(props: Properties) -> dict[str, Any] | None:
    counts = {
        "failed": props.get_property("tests_failed", 0),
        "skipped": props.get_property("tests_skipped", 0),
        "successful": props.get_property("tests_successful", 0),
    }
    return counts if any(counts.values()) else None


class BitbucketServerCoreAPIStatusPush(_BitbucketServerBase):
    """Buildbot's arguments: ``base_url``, ``token`` or ``auth`` (not both; may be secrets),
    ``statusName``, ``statusSuffix``, ``key``, ``parentName``, ``buildNumber``, ``ref``,
    ``duration``, ``testResults``, ``verbose``, ``debug``, ``verify``, ``generators``."""

    name = "BitbucketServerCoreAPIStatusPush"
    secrets = ("token", "auth")

    def checkConfig(  # type: ignore[override]
        self,
        base_url: Any = None,
        token: Any = None,
        auth: Any = None,
        statusName: Any = None,
        statusSuffix: Any = None,
        key: Any = None,
        parentName: Any = None,
        buildNumber: Any = None,
        ref: Any = None,
        duration: Any = None,
        testResults: Any = None,
        verbose: bool = False,
        debug: Any = None,
        verify: Any = None,
        generators: Any = None,
        **kwargs: Any,
    ) -> None:
        _check_base_url("BitbucketServerCoreAPIStatusPush", base_url)
        if token is not None and auth is not None:
            config_error(
                "BitbucketServerCoreAPIStatusPush: give one authentication method "
                "(token or auth), not both"
            )
        super().checkConfig(
            generators=self._default_generators() if generators is None else generators,
            **kwargs,
        )

    def _default_generators(self) -> list[Any]:
        return commit_status_generators()

    async def reconfigService(  # type: ignore[override]
        self,
        base_url: Any = None,
        token: Any = None,
        auth: Any = None,
        statusName: Any = None,
        statusSuffix: Any = None,
        key: Any = None,
        parentName: Any = None,
        buildNumber: Any = None,
        ref: Any = None,
        duration: Any = None,
        testResults: Any = None,
        verbose: bool = False,
        debug: Any = None,
        verify: Any = None,
        generators: Any = None,
        **kwargs: Any,
    ) -> None:
        self.status_name = statusName
        self.status_suffix = statusSuffix
        self.key = key or Interpolate("%(prop:buildername)s")
        self.parent_name = parentName
        self.build_number = buildNumber or Interpolate("%(prop:buildnumber)s")
        self.ref = ref
        self.duration = duration
        self.test_results = testResults
        self.verbose = verbose
        super().reconfigService(
            generators=self._default_generators() if generators is None else generators,
            **kwargs,
        )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        await self._open(
            base_url,
            headers=headers,
            auth=tuple(auth) if auth else None,
            verify=verify,
            debug=bool(debug),
        )

    async def _parent_and_name(self, props: Properties, build: dict[str, Any]) -> tuple[Any, str]:
        parent_builder = (build.get("parentbuilder") or {}).get("name")
        if self.parent_name:
            parent = await props.render(self.parent_name)
        else:
            parent = parent_builder or (build.get("builder") or {}).get("name")
        if self.status_name:
            status_name = str(await props.render(self.status_name))
        else:
            number = props.get_property("buildnumber") or "(build request)"
            status_name = f"{props.get_property('buildername')} #{number}"
            if parent_builder:
                parent_number = (build.get("parentbuild") or {}).get("number")
                status_name = f"{parent_builder} #{parent_number} \u00bb {status_name}"
        if self.status_suffix:
            status_name += str(await props.render(self.status_suffix))
        return parent, status_name

    async def sendMessage(self, reports: Sequence[dict[str, Any]]) -> None:
        report = reports[0]
        build = report["builds"][0]
        assert self._env is not None
        props = properties_of(self._env, build)
        duration: Any = None
        test_results: Any = None
        if build.get("complete"):
            state = SUCCESSFUL if build.get("results") == Results.SUCCESS else FAILED
            if self.duration:
                duration = await props.render(self.duration)
            else:
                started, ended = _epoch(build.get("started_at")), _epoch(build.get("complete_at"))
                if started is not None and ended is not None:
                    duration = int(ended - started) * 1000
            if self.test_results:
                test_results = await props.render(self.test_results)
            else:
                test_results = _test_results(props)
        else:
            state = INPROGRESS
        parent, status_name = await self._parent_and_name(props, build)
        key = await props.render(self.key)
        build_number = await props.render(self.build_number)
        for ss in (build.get("buildset") or {}).get("sourcestamps") or []:
            sha, branch = ss.get("revision"), ss.get("branch")
            if not sha:
                log.info("reporter_skipped", reporter=self.name, why="no revision")
                continue
            if self.ref is not None:
                ref = await props.render(self.ref)
            elif branch is not None:
                ref = branch if branch.startswith("refs/") else f"refs/heads/{branch}"
            else:
                ref = None
            found = _REPO.search(ss.get("repository") or "")
            if found is None:
                log.warning(
                    "reporter_skipped",
                    reporter=self.name,
                    why="no project/repository in the repository URL",
                    repository=ss.get("repository"),
                    buildid=build.get("buildid"),
                )
                continue
            proj_key, repo_slug = found.group(1), found.group(2)
            payload = {
                "state": state,
                "url": build.get("url"),
                "key": key,
                "parent": parent,
                "ref": ref,
                "buildNumber": build_number,
                "description": report.get("body"),
                "name": status_name,
                "duration": duration,
                "testResults": test_results,
            }
            response = await self._http.post(
                f"/rest/api/1.0/projects/{proj_key}/repos/{repo_slug}/commits/{sha}/builds",
                json=payload,
            )
            if response.status != 204:
                self._refused(response, build, state=state, repository=f"{proj_key}/{repo_slug}")
            elif self.verbose:
                log.info("reporter_status_set", reporter=self.name, state=state, sha=sha)


class BitbucketServerPRCommentPush(_BitbucketServerBase):
    """Buildbot's arguments: ``base_url``, ``user``, ``password`` (may be secrets),
    ``verbose``, ``debug``, ``verify``, ``generators`` (default: ``BuildStatusGenerator()``)."""

    name = "BitbucketServerPRCommentPush"

    def checkConfig(  # type: ignore[override]
        self,
        base_url: Any = None,
        user: Any = None,
        password: Any = None,
        verbose: bool = False,
        debug: Any = None,
        verify: Any = None,
        generators: Any = None,
        **kwargs: Any,
    ) -> None:
        _check_base_url("BitbucketServerPRCommentPush", base_url)
        if user is None or password is None:
            config_error("BitbucketServerPRCommentPush: user and password are required")
        super().checkConfig(
            generators=[BuildStatusGenerator()] if generators is None else generators, **kwargs
        )

    async def reconfigService(  # type: ignore[override]
        self,
        base_url: Any = None,
        user: Any = None,
        password: Any = None,
        verbose: bool = False,
        debug: Any = None,
        verify: Any = None,
        generators: Any = None,
        **kwargs: Any,
    ) -> None:
        user, password = await self.renderSecrets(user, password)
        self.verbose = verbose
        super().reconfigService(
            generators=[BuildStatusGenerator()] if generators is None else generators, **kwargs
        )
        await self._open(
            base_url, auth=(str(user), str(password)), verify=verify, debug=bool(debug)
        )

    async def sendComment(self, pr_url: str, text: Any) -> Response:
        path = urlparse(pr_url).path
        return await self._http.post(f"/rest/api/1.0{path}/comments", json={"text": text})

    async def sendMessage(self, reports: Sequence[dict[str, Any]]) -> None:
        bodies = [r.get("body") for r in reports if r.get("body") is not None]
        text: Any = bodies[0] if len(bodies) == 1 else "".join(str(b) for b in bodies)
        builds = [b for r in reports for b in r.get("builds") or []]
        assert self._env is not None
        urls: dict[str, dict[str, Any]] = {}
        for build in builds:
            url = properties_of(self._env, build).get_property("pullrequesturl")
            if url:
                urls.setdefault(str(url), build)
        for pr_url, build in urls.items():
            response = await self.sendComment(pr_url, text)
            if response.status != 201:
                self._refused(response, build, pullrequest=pr_url)
            elif self.verbose:
                log.info("reporter_comment_sent", reporter=self.name, pullrequest=pr_url)

"""``reporters.GerritVerifyStatusPush``: build results as verifications of Gerrit's
verify-status plugin, over its REST API.

For each Gerrit change a build came from (the ``gerrit_changes`` property, a list of
``{"change_id": ..., "revision_id": ...}``, else ``event.change.number`` with
``event.patchSet.number``), ``POST {baseURL}/a/changes/{change_id}/revisions/{revision_id}/
verify-status~verifications`` with JSON ``name`` (the rendered ``verification_name``, default
the builder's name), ``value`` (a finished build's result: +1 success or warnings, -1 failure,
0 skipped, exception, retry or cancelled, -1 anything else; 0 while it runs), ``abstain``,
``comment`` (the report's body: "Build started." / "Build done." by default), ``url`` (the
build's page), ``reporter`` (default ``buildbot``), ``category`` when given, and ``duration``
(``"1h 2m 3s"``, or ``"pending"`` while it runs), with HTTP Basic ``auth`` (a (user, password)
pair; either may be a secret). A refused post is logged with Gerrit's answer, naming the
reporter, the change and the build.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import structlog

from buildyard.common.errors import config_error
from buildyard.master.model.properties import Interpolate, Properties
from buildyard.master.model.results import Results
from buildyard.master.reporters.base import ReporterBase
from buildyard.master.reporters.details import properties_of
from buildyard.master.reporters.generators import BuildStartEndStatusGenerator
from buildyard.master.reporters.httpclient import RETRY_DELAYS, HttpClient, Response
from buildyard.master.reporters.message import MessageFormatterRenderable
from buildyard.master.reporters.service import maybe_await

log = structlog.get_logger(__name__)


def _seconds(value: object) -> float | None:
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


class GerritVerifyStatusPush(ReporterBase):
    """Buildbot's arguments: ``baseURL``, ``auth``, ``verification_name``, ``abstain``,
    ``category``, ``reporter``, ``verbose``, ``debug``, ``verify``, ``generators`` (default: a
    report when each build starts and ends)."""

    name = "GerritVerifyStatusPush"
    retry_delays: Sequence[float] = RETRY_DELAYS
    # Buildbot's names, overridable as there
    RESULTS_TABLE: dict[int, int] = {
        Results.SUCCESS: 1,
        Results.WARNINGS: 1,
        Results.FAILURE: -1,
        Results.SKIPPED: 0,
        Results.EXCEPTION: 0,
        Results.RETRY: 0,
        Results.CANCELLED: 0,
    }
    DEFAULT_RESULT = -1

    def _default_generators(self) -> list[Any]:
        return [
            BuildStartEndStatusGenerator(
                start_formatter=MessageFormatterRenderable("Build started."),
                end_formatter=MessageFormatterRenderable("Build done."),
            )
        ]

    def checkConfig(  # type: ignore[override]
        self,
        baseURL: Any = None,
        auth: Any = None,
        verification_name: Any = None,
        abstain: Any = False,
        category: Any = None,
        reporter: Any = None,
        verbose: Any = False,
        debug: Any = None,
        verify: Any = None,
        generators: Any = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(baseURL, str) or not baseURL:
            config_error("GerritVerifyStatusPush: baseURL must be given, as a URL")
        if auth is not None and not (isinstance(auth, list | tuple) and len(auth) == 2):
            config_error("GerritVerifyStatusPush: auth must be a (user, password) pair or None")
        super().checkConfig(
            generators=self._default_generators() if generators is None else generators,
            **kwargs,
        )

    async def reconfigService(  # type: ignore[override]
        self,
        baseURL: Any = None,
        auth: Any = None,
        verification_name: Any = None,
        abstain: Any = False,
        category: Any = None,
        reporter: Any = None,
        verbose: Any = False,
        debug: Any = None,
        verify: Any = None,
        generators: Any = None,
        **kwargs: Any,
    ) -> None:
        pair = None
        if auth is not None:
            user, password = await self.renderSecrets(auth[0], auth[1])
            pair = (str(user), str(password))
        self.verbose = bool(verbose)
        self._verification_name = verification_name or Interpolate("%(prop:buildername)s")
        self._reporter = reporter or "buildbot"
        self._abstain = abstain
        self._category = category
        super().reconfigService(
            generators=self._default_generators() if generators is None else generators,
            **kwargs,
        )
        old = getattr(self, "_http", None)
        if old is not None:
            await old.close()
        self._http = HttpClient(
            str(baseURL).rstrip("/"),
            auth=pair,
            verify=verify,
            debug=bool(debug),
            retry_delays=self.retry_delays,
            who=str(self.name),
        )

    async def stopService(self) -> None:
        await super().stopService()
        await self._http.close()

    async def createStatus(
        self,
        change_id: Any,
        revision_id: Any,
        name: Any,
        value: int,
        abstain: Any = None,
        rerun: Any = None,
        comment: Any = None,
        url: Any = None,
        reporter: Any = None,
        category: Any = None,
        duration: Any = None,
    ) -> Response:
        """POST one verification (the plugin's documented fields; None ones are left out)."""
        payload: dict[str, Any] = {"name": name, "value": value}
        for key, item in (
            ("abstain", abstain),
            ("rerun", rerun),
            ("comment", comment),
            ("url", url),
            ("reporter", reporter),
            ("category", category),
            ("duration", duration),
        ):
            if item is not None:
                payload[key] = item
        if self.verbose:
            log.info(
                "gerrit_verify_status_sending",
                reporter=self.name,
                change_id=change_id,
                revision_id=revision_id,
                data=payload,
            )
        # the ids come from build properties: quoted, so each stays one path segment
        change = quote(str(change_id), safe="")
        revision = quote(str(revision_id), safe="")
        path = f"/a/changes/{change}/revisions/{revision}/verify-status~verifications"
        return await self._http.post(path, json=payload)

    def formatDuration(self, duration: datetime.timedelta) -> str:
        """``"2 days 1h 2m 3s"``, ``"1h 2m 3s"`` or ``"2m 3s"`` (Gerrit takes any string)."""
        hours, rest = divmod(duration.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        if duration.days:
            days = f"{duration.days} day{'s' if duration.days > 1 else ''}"
            return f"{days} {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{hours}h {minutes}m {seconds}s"
        return f"{minutes}m {seconds}s"

    @staticmethod
    def getGerritChanges(props: Properties) -> Any:
        """The changes to report on: ``gerrit_changes``, else the change and patch set of the
        event that made the build; [] for a build of no Gerrit change."""
        if props.hasProperty("gerrit_changes"):
            return props.getProperty("gerrit_changes")
        if props.hasProperty("event.change.number"):
            return [
                {
                    "change_id": props.getProperty("event.change.number"),
                    "revision_id": props.getProperty("event.patchSet.number"),
                }
            ]
        return []

    async def sendMessage(self, reports: Sequence[dict[str, Any]]) -> None:
        report = reports[0]
        build = report["builds"][0]
        assert self._env is not None
        props = properties_of(self._env, build)
        if build.get("complete"):
            value = self.RESULTS_TABLE.get(build.get("results"), self.DEFAULT_RESULT)
            started, ended = _seconds(build.get("started_at")), _seconds(build.get("complete_at"))
            duration = self.formatDuration(
                datetime.timedelta(seconds=int((ended or 0) - (started or ended or 0)))
            )
        else:
            value = 0
            duration = "pending"
        name = await props.render(self._verification_name)
        reporter = await props.render(self._reporter)
        category = await props.render(self._category)
        abstain = await props.render(self._abstain)
        changes = await maybe_await(self.getGerritChanges(props))
        for change in changes or []:
            try:
                response = await self.createStatus(
                    change["change_id"],
                    change["revision_id"],
                    name,
                    value,
                    abstain=abstain,
                    rerun=None,
                    comment=report.get("body"),
                    url=build.get("url"),
                    reporter=reporter,
                    category=category,
                    duration=duration,
                )
            except Exception as exc:
                log.error(
                    "reporter_push_failed",
                    reporter=self.name,
                    change=str(change)[:200],
                    buildid=build.get("buildid"),
                    error=f"{type(exc).__name__}: {exc}",
                )
                continue
            if not response.ok:
                log.error(
                    "reporter_push_refused",
                    reporter=self.name,
                    status=response.status,
                    answer=response.text[:500],
                    change_id=change["change_id"],
                    revision_id=change["revision_id"],
                    buildid=build.get("buildid"),
                )

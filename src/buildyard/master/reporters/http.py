"""``reporters.HttpStatusPush``: POST each report's body, as JSON, to a URL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from buildyard.common.errors import config_error
from buildyard.master.reporters.base import ReporterBase
from buildyard.master.reporters.generators import BuildStatusGenerator
from buildyard.master.reporters.httpclient import RETRY_DELAYS, HttpClient
from buildyard.master.reporters.message import MessageFormatterFunction

log = structlog.get_logger(__name__)


def _build_of(context: dict[str, Any]) -> Any:
    return context["build"]


def check_url(owner: str, what: str, url: object) -> None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        config_error(f"{owner}: {what} must be an http:// or https:// URL, not {url!r}")


class HttpStatusPush(ReporterBase):
    """Buildbot's arguments: ``serverUrl``, ``auth`` (user, password; may be secrets),
    ``headers``, ``debug``, ``verify``, ``cert``, ``skip_encoding`` (no effect: the body is the
    same UTF-8 JSON either way), ``generators`` (default: every finished build, and every
    started one, its build dict as the body)."""

    name = "HttpStatusPush"
    secrets = ("auth",)
    retry_delays: Sequence[float] = RETRY_DELAYS

    def checkConfig(  # type: ignore[override]
        self,
        serverUrl: Any = None,
        auth: Any = None,
        headers: Any = None,
        debug: Any = None,
        verify: Any = None,
        cert: Any = None,
        skip_encoding: bool = False,
        generators: Any = None,
        **kwargs: Any,
    ) -> None:
        check_url("HttpStatusPush", "serverUrl", serverUrl)
        if auth is not None and not (isinstance(auth, list | tuple) and len(auth) == 2):
            config_error("HttpStatusPush: auth must be a (user, password) pair")
        if headers is not None and not isinstance(headers, dict):
            config_error(f"HttpStatusPush: headers must be a dict, not {headers!r}")
        super().checkConfig(
            generators=self._default_generators() if generators is None else generators,
            **kwargs,
        )

    def _default_generators(self) -> list[Any]:
        formatter = MessageFormatterFunction(_build_of, "json")
        return [BuildStatusGenerator(message_formatter=formatter, report_new=True)]

    async def reconfigService(  # type: ignore[override]
        self,
        serverUrl: str,
        auth: Any = None,
        headers: Any = None,
        debug: Any = None,
        verify: Any = None,
        cert: Any = None,
        skip_encoding: bool = False,
        generators: Any = None,
        **kwargs: Any,
    ) -> None:
        super().reconfigService(
            generators=self._default_generators() if generators is None else generators,
            **kwargs,
        )
        old = getattr(self, "_http", None)
        if old is not None:
            await old.close()
        self._http = HttpClient(
            serverUrl,
            headers=headers,
            auth=auth,
            verify=verify,
            cert=cert,
            debug=bool(debug),
            retry_delays=self.retry_delays,
            who=str(self.name),
        )

    async def stopService(self) -> None:
        await super().stopService()
        await self._http.close()

    async def sendMessage(self, reports: Sequence[dict[str, Any]]) -> None:
        # as Buildbot: the first report's body, one POST per event
        response = await self._http.post("", json=reports[0]["body"])
        if not response.ok:
            build = (reports[0].get("builds") or [{}])[0]
            log.error(
                "reporter_push_refused",
                reporter=self.name,
                status=response.status,
                answer=response.text[:500],
                buildid=build.get("buildid"),
                buildrequestid=build.get("buildrequestid"),
            )

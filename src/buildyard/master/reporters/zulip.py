"""``reporters.ZulipStatusPush``: build events to Zulip's Buildbot integration.

``POST {endpoint}/api/v1/external/buildbot?api_key={token}[&stream={stream}]`` with JSON
``event`` (``new`` or ``finished``), ``buildid``, ``buildername``, ``url``, ``project`` (the
build's ``project`` property), ``timestamp`` (when the build started or finished, in epoch
seconds) and, when finished, ``results``. Zulip answers 200.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import structlog

from buildyard.common.errors import config_error
from buildyard.master.reporters.base import ReporterBase
from buildyard.master.reporters.details import properties_of
from buildyard.master.reporters.generators import BuildStartEndStatusGenerator
from buildyard.master.reporters.httpclient import RETRY_DELAYS, HttpClient

log = structlog.get_logger(__name__)


def _timestamp(value: object) -> int | None:
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    if isinstance(value, int | float):
        return int(value)
    return None


class ZulipStatusPush(ReporterBase):
    """Buildbot's arguments: ``endpoint`` (the Zulip server's URL), ``token`` (the bot's API
    key; may be a ``util.Secret``), ``stream``, ``debug``, ``verify``. The reports are fixed:
    every build's start and end."""

    name = "ZulipStatusPush"
    secrets = ("token",)
    retry_delays: Sequence[float] = RETRY_DELAYS

    def checkConfig(  # type: ignore[override]
        self,
        endpoint: Any = None,
        token: Any = None,
        stream: Any = None,
        debug: Any = None,
        verify: Any = None,
    ) -> None:
        if not isinstance(endpoint, str):
            config_error("ZulipStatusPush: endpoint must be a string")
        if not isinstance(token, str) and not callable(getattr(token, "getRenderingFor", None)):
            config_error("ZulipStatusPush: token must be a string or a secret")
        super().checkConfig(generators=[BuildStartEndStatusGenerator()])

    async def reconfigService(  # type: ignore[override]
        self,
        endpoint: str,
        token: str,
        stream: Any = None,
        debug: Any = None,
        verify: Any = None,
    ) -> None:
        super().reconfigService(generators=[BuildStartEndStatusGenerator()])
        old = getattr(self, "_http", None)
        if old is not None:
            await old.close()
        self._http = HttpClient(
            endpoint.rstrip("/"),
            verify=verify,
            debug=bool(debug),
            retry_delays=self.retry_delays,
            who=str(self.name),
        )
        self.token = token
        self.stream = stream

    async def stopService(self) -> None:
        await super().stopService()
        await self._http.close()

    async def sendMessage(self, reports: Sequence[dict[str, Any]]) -> None:
        build = reports[0]["builds"][0]
        assert self._env is not None
        finished = bool(build.get("complete"))
        data: dict[str, Any] = {
            "event": "finished" if finished else "new",
            "buildid": build.get("buildid"),
            "buildername": (build.get("builder") or {}).get("name"),
            "url": build.get("url"),
            "project": properties_of(self._env, build).get_property("project"),
        }
        if finished:
            data["timestamp"] = _timestamp(build.get("complete_at"))
            data["results"] = build.get("results")
        else:
            data["timestamp"] = _timestamp(build.get("started_at"))
        query = {"api_key": self.token}
        if self.stream is not None:
            query["stream"] = str(self.stream)
        response = await self._http.post(f"/api/v1/external/buildbot?{urlencode(query)}", json=data)
        if response.status != 200:
            log.error(
                "reporter_push_refused",
                reporter=self.name,
                build_event=data["event"],
                status=response.status,
                answer=response.text[:500],
                buildid=build.get("buildid"),
            )

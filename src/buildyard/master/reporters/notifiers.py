"""``reporters.PushoverNotifier`` and ``reporters.PushjetNotifier``: push notifications.

- Pushover: ``POST https://api.pushover.net/1/messages.json`` with the fields in the query
  string (as Buildbot sends them): ``message`` (the body), ``title`` (the subject), ``html=1``
  for HTML messages, ``priority`` (from ``priorities``), ``user``, ``token`` and
  ``otherParams``.
- Pushjet: ``POST {base_url}/message`` with the form fields ``message``, ``title``, ``level``
  (from ``levels``) and ``secret``.

``priorities``/``levels`` map ``passing``, ``warnings``, ``failing``, ``exception``,
``cancelled`` and ``worker_missing`` to the service's priority or level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import structlog

from buildyard.common.errors import config_error
from buildyard.master.model.results import Results
from buildyard.master.reporters.base import ReporterBase
from buildyard.master.reporters.generators import BuildStatusGenerator
from buildyard.master.reporters.httpclient import RETRY_DELAYS, HttpClient, Response
from buildyard.master.reporters.message import MessageFormatter

log = structlog.get_logger(__name__)

_RESULT_NAMES = {
    Results.CANCELLED: "cancelled",
    Results.EXCEPTION: "exception",
    Results.FAILURE: "failing",
    Results.SUCCESS: "passing",
    Results.WARNINGS: "warnings",
}

# buildyard's own wording
DEFAULT_TEMPLATE = (
    '<a href="{{ build_url }}">{{ buildername }}</a>: {{ status_detected }} '
    "(building {{ projects }} on {{ workername }})."
)

PUSHOVER_PARAMS = frozenset(
    {"sound", "callback", "timestamp", "url", "url_title", "device", "retry", "expire", "html"}
)


def _default_generators() -> list[Any]:
    formatter = MessageFormatter(template_type="html", template=DEFAULT_TEMPLATE)
    return [BuildStatusGenerator(message_formatter=formatter)]


def _merged(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Buildbot's merge of several reports: bodies joined, the first subject, type and
    worker, the worst result."""
    bodies = [r.get("body") for r in reports if r.get("body") is not None]
    body: Any = bodies[0] if len(bodies) == 1 else "".join(str(b) for b in bodies)
    results = [int(r["results"]) for r in reports if r.get("results") is not None]
    first = {
        k: next((r[k] for r in reports if r.get(k) is not None), None)
        for k in ("subject", "type", "worker")
    }
    return {**first, "body": body, "results": max(results) if results else None}


def _kind(report: dict[str, Any]) -> str | None:
    if report.get("worker") is not None:
        return "worker_missing"
    results = report.get("results")
    return _RESULT_NAMES.get(Results(results)) if results in set(Results) else None


class _Notifier(ReporterBase):
    retry_delays: Sequence[float] = RETRY_DELAYS

    async def _open(self, base_url: str) -> None:
        old = getattr(self, "_http", None)
        if old is not None:
            await old.close()
        self._http = HttpClient(base_url, retry_delays=self.retry_delays, who=str(self.name))

    async def stopService(self) -> None:
        await super().stopService()
        await self._http.close()

    def _check(self, response: Response, reports: Sequence[dict[str, Any]]) -> None:
        if not response.ok:
            build: dict[str, Any] = next((b for r in reports for b in r.get("builds") or []), {})
            log.error(
                "reporter_push_refused",
                reporter=self.name,
                status=response.status,
                answer=response.text[:500],
                buildid=build.get("buildid"),
                worker=reports[0].get("worker"),
            )


class PushoverNotifier(_Notifier):
    """Buildbot's arguments: ``user_key``, ``api_token`` (may be secrets), ``priorities``,
    ``otherParams``, ``generators`` (default: failing, passing and warning builds, HTML)."""

    name = "PushoverNotifier"
    #: Pushover's API; not an argument (as in Buildbot), a class attribute tests point away
    api_url = "https://api.pushover.net"

    def checkConfig(  # type: ignore[override]
        self,
        user_key: Any = None,
        api_token: Any = None,
        priorities: Any = None,
        otherParams: Any = None,
        generators: Any = None,
    ) -> None:
        if user_key is None or api_token is None:
            config_error("PushoverNotifier: user_key and api_token are required")
        super().checkConfig(generators=_default_generators() if generators is None else generators)
        if otherParams is not None and set(otherParams) - PUSHOVER_PARAMS:
            config_error(
                "PushoverNotifier: otherParams can be only "
                + ", ".join(repr(p) for p in sorted(PUSHOVER_PARAMS))
            )

    async def reconfigService(  # type: ignore[override]
        self,
        user_key: Any = None,
        api_token: Any = None,
        priorities: Any = None,
        otherParams: Any = None,
        generators: Any = None,
    ) -> None:
        self.user_key, self.api_token = await self.renderSecrets(user_key, api_token)
        super().reconfigService(
            generators=_default_generators() if generators is None else generators
        )
        self.priorities = dict(priorities or {})
        self.otherParams = dict(otherParams or {})
        await self._open(self.api_url)

    async def sendMessage(self, reports: Sequence[dict[str, Any]]) -> None:
        report = _merged(reports)
        msg: dict[str, Any] = {"message": report["body"], "title": report["subject"]}
        if report["type"] == "html":
            msg["html"] = "1"
        kind = _kind(report)
        if kind in self.priorities:
            msg["priority"] = self.priorities[kind]
        await self.sendNotification(msg, reports)

    async def sendNotification(
        self, params: dict[str, Any], reports: Sequence[dict[str, Any]] = ()
    ) -> Response:
        params = {**params, "user": self.user_key, "token": self.api_token, **self.otherParams}
        fields = {k: str(v) for k, v in params.items() if v is not None}
        response = await self._http.request("POST", f"/1/messages.json?{urlencode(fields)}")
        self._check(response, reports or [{}])
        return response


class PushjetNotifier(_Notifier):
    """Buildbot's arguments: ``secret`` (may be a secret), ``levels``, ``base_url`` (default
    ``https://api.pushjet.io``), ``generators`` (default: failing, passing and warning builds,
    HTML)."""

    name = "PushjetNotifier"

    def checkConfig(  # type: ignore[override]
        self,
        secret: Any = None,
        levels: Any = None,
        base_url: str = "https://api.pushjet.io",
        generators: Any = None,
    ) -> None:
        if secret is None:
            config_error("PushjetNotifier: secret is required")
        super().checkConfig(generators=_default_generators() if generators is None else generators)

    async def reconfigService(  # type: ignore[override]
        self,
        secret: Any = None,
        levels: Any = None,
        base_url: str = "https://api.pushjet.io",
        generators: Any = None,
    ) -> None:
        self.secret = await self.renderSecrets(secret)
        super().reconfigService(
            generators=_default_generators() if generators is None else generators
        )
        self.levels = dict(levels or {})
        await self._open(str(base_url).rstrip("/"))

    async def sendMessage(self, reports: Sequence[dict[str, Any]]) -> None:
        report = _merged(reports)
        msg: dict[str, Any] = {"message": report["body"], "title": report["subject"]}
        level = self.levels.get(_kind(report))
        if level is not None:
            msg["level"] = level
        await self.sendNotification(msg, reports)

    async def sendNotification(
        self, params: dict[str, Any], reports: Sequence[dict[str, Any]] = ()
    ) -> Response:
        params = {**params, "secret": self.secret}
        fields = {k: str(v) for k, v in params.items() if v is not None}
        response = await self._http.post("/message", form=fields)
        self._check(response, reports or [{}])
        return response

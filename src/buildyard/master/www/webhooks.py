"""Webhooks that services serve directly under the web server's root (Buildbot's
``WebhookResource``): ``TelegramBot(useWebhook=True)`` takes Telegram's updates at
``<buildbotURL>telegram<bot token>``.

A service registers the last segment of its path with :meth:`Webhooks.add` and gets each
request's JSON body. The path carries a secret (Telegram's bot token), so it is never logged
nor echoed: an unknown path is a bare 404, and the log lines name the service that registered
it. A body that is not JSON (``Content-Type: application/json``, at most :data:`MAX_BODY`
bytes) is refused (400, 415 or 413) before the service sees it; one taken is answered 202
(the service may answer it later). GET is taken like POST, as
Buildbot does. These routes are outside ``c['www']['auth']``: the secret path is their
authentication, as in Buildbot. A service may also name a header that must carry a secret it
chose (Telegram's ``X-Telegram-Bot-Api-Secret-Token``, which Buildbot does not use): a request
without it is refused (403) before its body is read.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

__all__ = ["PREFIXES", "Webhooks", "is_webhook_path", "setup"]

#: the first letters of every webhook path (only Telegram's exist)
PREFIXES = ("telegram",)
#: Telegram's updates are small; nothing bigger is read
MAX_BODY = 1024 * 1024

WEBHOOKS = web.AppKey("webhooks", object)

Handler = Callable[[Any], Awaitable[None]]


class Webhooks:
    """The registered webhook paths; one for the web service's life (kept across reconfigs)."""

    def __init__(self) -> None:
        self._handlers: dict[str, tuple[str, Handler, tuple[str, str] | None]] = {}

    def add(
        self,
        segment: str,
        owner: str,
        handler: Handler,
        *,
        secret_header: tuple[str, str] | None = None,
    ) -> Callable[[], None]:
        """Serve ``/<segment>`` with ``handler`` (``owner`` names it in logs); with
        ``secret_header`` (a header's name and value), only requests carrying that header with
        that value. Returns the function that stops serving it."""
        if not segment.startswith(PREFIXES) or "/" in segment:
            raise ValueError(f"{owner}: a webhook path starts with one of {PREFIXES}")
        entry = (owner, handler, secret_header)
        self._handlers[segment] = entry

        def remove() -> None:
            if self._handlers.get(segment) is entry:
                del self._handlers[segment]

        return remove

    def __contains__(self, segment: str) -> bool:
        return segment in self._handlers

    async def serve(self, request: web.Request) -> web.StreamResponse:
        found = self._handlers.get(request.match_info["segment"])
        if found is None:
            return _answer(404, "not found")
        owner, handler, secret_header = found
        if secret_header is not None:
            name, expected = secret_header
            given = request.headers.get(name, "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                log.warning(
                    "webhook_refused",
                    service=owner,
                    why=f"{name} missing" if not given else f"wrong {name}",
                )
                return _answer(403, "forbidden")
        content_type = request.headers.get("Content-Type", "")
        if not content_type.startswith("application/json"):
            log.warning("webhook_refused", service=owner, why="not JSON", content_type=content_type)
            return _answer(415, "expected application/json")
        if request.content_length is not None and request.content_length > MAX_BODY:
            log.warning("webhook_refused", service=owner, why="too big")
            return _answer(413, "too big")
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            log.warning("webhook_refused", service=owner, why="too big")
            return _answer(413, "too big")
        try:
            body = json.loads(raw)
        except ValueError:
            log.warning("webhook_refused", service=owner, why="body is not JSON")
            return _answer(400, "body is not JSON")
        await handler(body)
        # taken, answered later (Buildbot's webhook answers 202 too)
        return _answer(202, "accepted")


def _answer(status: int, text: str) -> web.Response:
    return web.Response(
        status=status,
        text=text,
        content_type="text/plain",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def setup(app: web.Application, webhooks: Webhooks | None) -> None:
    registry = webhooks or Webhooks()
    app[WEBHOOKS] = registry
    pattern = "|".join(PREFIXES)
    app.add_routes([web.route("*", f"/{{segment:(?:{pattern})[^/]+}}", registry.serve)])


def is_webhook_path(path: str) -> bool:
    return path.startswith(tuple("/" + p for p in PREFIXES)) and path.count("/") == 1

"""``/change_hook/<dialect>``: webhooks that record changes (``c['www']['change_hook_dialects']``).

A request is checked against ``c['www']['change_hook_auth']`` if set (HTTP Basic auth; 401
otherwise) and refused (400) if its dialect is not configured, both before its body is read; the
body is then read in full (at most :data:`MAX_BODY` bytes: a bigger one is a 413, unread; within
:data:`BODY_TIMEOUT`, else a 408), and handed to its dialect's handler
(:mod:`buildyard.master.changes.hooks`). The changes it returns
are recorded one by one through the data layer's ``add_change``, exactly as a poller's are, so
schedulers see them the same way; the answer goes out once they are stored: ``200`` with
``"<n> change found"`` or ``"no change found"``, as Buildbot answers (its code sets 202, but
only after the body went out with 200). A handler's
``ValueError`` (a bad signature, an unknown event, a payload without a field it needs...) is a
``400`` with its message (cut at :data:`MAX_ECHO` characters); anything else a ``500``. Each
refusal is logged with the hook's name.

Every answer is ``text/plain`` with ``X-Content-Type-Options: nosniff`` (Buildbot answers
``text/html``): the routes are there with no hook configured and outside ``c['www']['auth']``,
and messages quote the request (a dialect's name, a header), so an HTML answer would run a
link's script on the UI's origin. A dialect's name is quoted only when it is a plain name
(:data:`_PLAIN_NAME`), as Buildbot's message has it; any other is "an unknown dialect".
``/change_hook`` alone is the ``base`` dialect. GET is taken like POST, as Buildbot does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import structlog
from aiohttp import web

from buildyard.common.connections import BODY_TIMEOUT
from buildyard.master.changes.hooks import dialects
from buildyard.master.changes.hooks.base import (
    BadChange,
    HookContext,
    Pollable,
    change_arguments,
    resolve,
)
from buildyard.master.changes.hooks.request import HookRequest

log = structlog.get_logger(__name__)

# GitHub does not deliver payloads above 25 MB; nothing a forge sends is bigger
MAX_BODY = 25 * 1024 * 1024
_READ_CHUNK = 64 * 1024
# the longest message a refusal quotes back (a handler's message quotes request parts)
MAX_ECHO = 300
# a dialect's name that the refusal of an unconfigured dialect quotes (and logs) as it is
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class ChangeWriter(Protocol):
    @property
    def add_change(self) -> Callable[..., Awaitable[int]]:
        """Updates.add_change: records a change from its keywords; its id once stored."""
        ...


class HookServices(Protocol):
    """What the master hands the hooks: where changes go, secrets and pollers (the
    :class:`HookContext`), and the master object itself (users' handlers get it, as in
    Buildbot)."""

    @property
    def changes(self) -> ChangeWriter: ...

    @property
    def master(self) -> Any: ...

    async def secret(self, name: str) -> str | None: ...

    def pollers(self) -> Mapping[str, Pollable]: ...


class _Unauthorized(Exception):
    pass


@dataclasses.dataclass
class ChangeHooks:
    """The hooks of the web server; handlers are built on first use and kept until the next
    :meth:`configure`."""

    dialects: Mapping[str, Any]
    auth: Sequence[Any] | None
    services: HookServices | None
    _handlers: dict[str, Any] = dataclasses.field(default_factory=dict)

    def configure(self, www: Mapping[str, Any]) -> None:
        """Take ``c['www']``'s hook settings; the next request uses them."""
        dialects = www.get("change_hook_dialects") or {}
        auth = www.get("change_hook_auth")
        if dialects != self.dialects or auth != self.auth:
            self.dialects, self.auth = dialects, auth
            self._handlers = {}

    def configured(self, dialect: str) -> bool:
        return dialect in self.dialects and self.services is not None

    def handler(self, dialect: str) -> Any:
        if not self.configured(dialect):
            raise ValueError(_not_whitelisted(dialect))
        assert self.services is not None
        found = self._handlers.get(dialect)
        if found is None:
            options = self.dialects[dialect]
            found = dialects.handler_class(dialect, options)(self.services.master, options)
            bind = getattr(found, "bind", None)
            if callable(bind):
                context: HookContext = self.services
                bind(context)
            self._handlers[dialect] = found
        return found

    async def check_auth(self, request: web.Request) -> None:
        if not self.auth:
            return
        header = request.headers.get("Authorization", "")
        kind, _, encoded = header.partition(" ")
        if kind.lower() != "basic":
            raise _Unauthorized("no credentials")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _Unauthorized("malformed credentials") from None
        for checker in self.auth:
            if await asyncio.to_thread(checker.check, user, password):
                return
        raise _Unauthorized(f"wrong credentials for {user!r}")


HOOKS = web.AppKey("change_hooks", ChangeHooks)


def setup(app: web.Application, hooks: ChangeHooks | None) -> None:
    """Serve the change hooks of ``hooks`` (none: every dialect is refused) on ``app``."""
    app[HOOKS] = hooks or ChangeHooks(dialects={}, auth=None, services=None)
    app.add_routes(
        [
            web.route("*", "/change_hook", _serve),
            web.route("*", "/change_hook/{dialect:[^/]*}", _serve),
            web.route("*", "/change_hook/{dialect:[^/]*}/{tail:.*}", _serve),
        ]
    )


def _not_whitelisted(dialect: str) -> str:
    if _PLAIN_NAME.fullmatch(dialect):
        return f"The dialect specified, '{dialect}', wasn't whitelisted in change_hook"
    return "The dialect specified is an unknown dialect, not whitelisted in change_hook"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "..."


def _answer(status: int, text: str) -> web.Response:
    response = web.Response(
        status=status, text=_cut(text), content_type="text/plain", charset="utf-8"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


async def _read_body(request: web.Request) -> bytes | None:
    """The body, or None when it is over :data:`MAX_BODY`."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_READ_CHUNK):
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _copies_the_payload(handler: object) -> bool:
    """Whether ``handler`` is one of buildyard's own dialects (not a user's class, nor a
    user's ``class`` given to one): they copy the payload's values into the change as they
    come, so a change of the wrong shape is the sender's mistake (400), not the handler's."""
    inner = getattr(handler, "handler", handler)
    return all(type(h).__module__.startswith("buildyard.") for h in (handler, inner))


async def _serve(request: web.Request) -> web.StreamResponse:
    if request.method not in ("GET", "POST"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
    hooks = request.app[HOOKS]
    dialect = request.match_info.get("dialect") or "base"
    with structlog.contextvars.bound_contextvars(remote=request.remote):
        try:
            await hooks.check_auth(request)
        except _Unauthorized as exc:
            log.warning("change_hook_refused", hook=dialect, status=401, reason=str(exc))
            response = _answer(401, "Unauthorized")
            response.headers["WWW-Authenticate"] = 'Basic realm="Protected area"'
            return response
        if not hooks.configured(dialect):
            # refused before the body is read: anyone may reach this route
            log.warning(
                "change_hook_refused",
                hook=_cut(dialect),
                status=400,
                reason="the dialect is not configured",
            )
            return _answer(400, _not_whitelisted(dialect))
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                body = await _read_body(request)
        except TimeoutError:
            reason = f"the body did not arrive within {BODY_TIMEOUT:g} s"
            log.warning("change_hook_refused", hook=dialect, status=408, reason=reason)
            return _answer(408, reason)
        if body is None:
            reason = f"the request body is over {MAX_BODY} bytes"
            log.warning("change_hook_refused", hook=dialect, status=413, reason=reason)
            return _answer(413, reason)
        try:
            hook_request = HookRequest(
                method=request.method,
                path=request.path,
                query_string=request.rel_url.raw_query_string,
                headers=request.headers,
                body=body,
            )
            handler = hooks.handler(dialect)
            changes, src = await resolve(handler.getChanges(hook_request))
            arguments = [change_arguments(chdict) for chdict in changes or []]
        except ValueError as exc:
            log.warning("change_hook_refused", hook=dialect, status=400, reason=_cut(str(exc)))
            return _answer(400, str(exc))
        except BadChange as exc:
            if _copies_the_payload(handler):
                message = f"the payload gave a bad change: {exc}"
                log.warning("change_hook_refused", hook=dialect, status=400, reason=_cut(message))
                return _answer(400, message)
            reason = f"the handler gave a bad change: {exc}"
            log.error("change_hook_failed", hook=dialect, reason=reason)
            return _answer(500, "Error processing changes.")
        except Exception:
            log.exception("change_hook_failed", hook=dialect)
            return _answer(500, "Error processing changes.")
        if not arguments:
            log.info("change_hook_no_change", hook=dialect)
            return _answer(200, "no change found")
        assert hooks.services is not None
        try:
            source = src.decode("utf-8", "replace") if isinstance(src, bytes) else src
            source = source if isinstance(source, str) else None
            ids = [
                await hooks.services.changes.add_change(**args, src=source) for args in arguments
            ]
        except Exception:
            log.exception("change_hook_failed", hook=dialect, reason="recording the changes")
            return _answer(500, "Error processing changes.")
        log.info("change_hook_changes", hook=dialect, changeids=ids, src=src)
        return _answer(200, f"{len(ids)} change found")

"""GET /api/v2/<path>: the data API's reads in Buildbot's REST envelope (docs/rest-api.md)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from buildyard.master.data.api import DataAPI
from buildyard.master.data.errors import InvalidQuery, NotFound
from buildyard.master.data.resources.base import Collection, RawData
from buildyard.master.data.resultspec import parse
from buildyard.master.www import auth

DATA_API = web.AppKey("data_api", DataAPI)
log = structlog.get_logger(__name__)


def _unknown(_value: object) -> None:
    # as Buildbot's encoder: a value JSON has no form for (a patch's bytes) is sent as null
    return None


def _reply(request: web.Request, body: Any, status: int = 200) -> web.Response:
    if "application/json" in request.headers.get("Accept", ""):
        text = json.dumps(body, separators=(",", ":"), default=_unknown)
        return web.Response(text=text, status=status, content_type="application/json")
    text = json.dumps(body, indent=2, default=_unknown)
    return web.Response(text=text, status=status, content_type="text/plain")


def _error(message: str, status: int) -> web.Response:
    return web.Response(
        text=json.dumps({"error": message}), status=status, content_type="text/plain"
    )


async def get(request: web.Request) -> web.StreamResponse:
    path = request.match_info["path"]
    if path.endswith("/") or not path:
        return _error(f"invalid path: {path!r}", 404)
    return await _get(request, path)


async def get_root(request: web.Request) -> web.StreamResponse:
    """``/api/v2`` itself: the root links (Buildbot's ``rootlinks``)."""
    return await _get(request, "")


async def _get(request: web.Request, path: str) -> web.StreamResponse:
    api = request.app[DATA_API]
    segments = tuple(path.split("/")) if path else ()
    try:  # as Buildbot: a read is the action "get", checked before anything is read
        await auth.check(request, api, segments, "get", {})
    except auth.Forbidden as exc:
        return _error(exc.message, 403)
    prefix, _, last = path.rpartition("/")
    # ``raw`` is also a name a builder or a log's slug may have: only after a log is it a download
    if last in _RAW and prefix and _names_log(api, prefix):
        return await _raw_log(request, prefix, inline=last == "raw_inline")
    args: dict[str, list[str]] = defaultdict(list)
    for key, value in request.query.items():
        args[key].append(value)
    try:
        ep = api.endpoint(path)
        if ep.raw is not None:
            # query arguments are checked as for the entity (Buildbot does), then unused
            parse(args, ep.rtype.value_types())
            return _raw_data(await api.get_raw(path))
        result = await api.get_with_args(path, args)
    except NotFound as exc:
        return _error(str(exc), 404)
    except InvalidQuery as exc:
        return _error(str(exc), 400)
    except Exception as exc:  # a bug of ours: say so in the API's shape, log the details
        log.exception("rest_request_failed", path=path)
        return _error(f"internal error: {type(exc).__name__}", 500)
    plural = ep.rtype.plural
    if isinstance(result, Collection):
        meta = {} if result.total is None else {"total": result.total}
        return _reply(request, {plural: result.items, "meta": meta})
    return _reply(request, {plural: [result], "meta": {}})


_RAW = ("raw", "raw_inline")


def _raw_data(raw: RawData) -> web.Response:
    """A download (a build's data value), as an attachment named after it."""
    return web.Response(
        body=raw.body,
        content_type=raw.content_type,
        headers={"Content-Disposition": f"attachment; filename={raw.filename}"},
    )


def _names_log(api: DataAPI, path: str) -> bool:
    try:
        ep = api.endpoint(path)
    except NotFound:
        return False
    return ep.rtype.name == "log" and ep.item is not None


async def _raw_log(request: web.Request, path: str, *, inline: bool) -> web.StreamResponse:
    """A log's text as a download, streamed a batch of lines at a time.

    docs/rest-api.md, "Log contents"."""
    api = request.app[DATA_API]
    try:
        raw = await api.raw_log(path)
    except NotFound as exc:
        return _error(str(exc), 404)
    response = web.StreamResponse()
    response.content_type = raw.content_type
    response.charset = "utf-8"
    # a build's html log is the build's text, not the master's page: shown in a sandbox (no
    # script, a unique origin), so it can never act with the viewer's session
    response.headers["Content-Security-Policy"] = "sandbox"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if not inline:
        response.headers["Content-Disposition"] = f"attachment; filename={raw.filename}"
    await response.prepare(request)
    async for text in api.raw_log_text(raw):
        await response.write(text.encode("utf-8"))
    await response.write_eof()
    return response


_API_METHODS = ("GET", "HEAD", "POST")


@web.middleware
async def method_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A method /api/v2 does not serve (PUT, DELETE...): a 405 in the API's error shape, not
    aiohttp's plain text."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        if request.path != "/api/v2" and not request.path.startswith("/api/v2/"):
            raise
        # what this path serves (the router knows: /api/v2 itself takes no POST)
        allowed = [m for m in _API_METHODS if m in exc.allowed_methods] or sorted(
            exc.allowed_methods
        )
    choices = ", ".join(allowed[:-1]) + " or " + allowed[-1] if len(allowed) > 1 else allowed[0]
    message = f"invalid HTTP method {request.method} for {request.path}: use {choices}"
    response = _error(message, 405)
    response.headers["Allow"] = ",".join(allowed)
    return response


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v2", get_root), web.get("/api/v2/{path:.*}", get)]

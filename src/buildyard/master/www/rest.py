"""GET /api/v2/<path>: the data API's reads in Buildbot's REST envelope (spec/rest-api.md 3)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import structlog
from aiohttp import web

from buildyard.master.data.api import DataAPI
from buildyard.master.data.errors import InvalidQuery, NotFound
from buildyard.master.data.resources.base import Collection

DATA_API = web.AppKey("data_api", DataAPI)
log = structlog.get_logger(__name__)


def _reply(request: web.Request, body: Any, status: int = 200) -> web.Response:
    if "application/json" in request.headers.get("Accept", ""):
        text = json.dumps(body, separators=(",", ":"))
        return web.Response(text=text, status=status, content_type="application/json")
    return web.Response(text=json.dumps(body, indent=2), status=status, content_type="text/plain")


def _error(message: str, status: int) -> web.Response:
    return web.Response(
        text=json.dumps({"error": message}), status=status, content_type="text/plain"
    )


async def get(request: web.Request) -> web.StreamResponse:
    path = request.match_info["path"]
    if path.endswith("/") or not path:
        return _error(f"invalid path: {path!r}", 404)
    prefix, _, last = path.rpartition("/")
    if last in _RAW and prefix:
        return await _raw_log(request, prefix, inline=last == "raw_inline")
    args: dict[str, list[str]] = defaultdict(list)
    for key, value in request.query.items():
        args[key].append(value)
    api = request.app[DATA_API]
    try:
        ep = api.endpoint(path)
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


async def _raw_log(request: web.Request, path: str, *, inline: bool) -> web.StreamResponse:
    """A log's text as a download, streamed a batch of lines at a time (spec 5.5)."""
    api = request.app[DATA_API]
    try:
        raw = await api.raw_log(path)
    except NotFound as exc:
        return _error(str(exc), 404)
    response = web.StreamResponse()
    response.content_type = raw.content_type
    response.charset = "utf-8"
    if not inline:
        response.headers["Content-Disposition"] = f"attachment; filename={raw.filename}"
    await response.prepare(request)
    async for text in api.raw_log_text(raw):
        await response.write(text.encode("utf-8"))
    await response.write_eof()
    return response


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v2/{path:.*}", get)]

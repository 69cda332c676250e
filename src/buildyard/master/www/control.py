"""POST /api/v2/<path>: control actions in JSON-RPC 2.0, as Buildbot's REST API takes them.

Only ``force`` on ``forceschedulers/<name>`` exists so far::

    POST /api/v2/forceschedulers/force
    {"jsonrpc": "2.0", "method": "force", "id": 1, "params": {"builderid": 3, "reason": "x"}}
    -> {"id": 1, "jsonrpc": "2.0", "result": [bsid, {"3": brid}]}

As in Buildbot (``www/rest.py`` ``renderJsonRpc``): the body must be ``application/json``; one
object (no batches) with ``jsonrpc`` "2.0", a string ``method``, an ``id`` and an object
``params``; without authentication the owner is ``"anonymous"`` (so the scheduler takes its
username field). Errors answer ``{"jsonrpc", "id", "error": {"code", "message"}}`` with
Buildbot's HTTP statuses: 400 for a bad request (-32700, -32600) or fields the scheduler refused
(-32602, ``message`` maps each field's fullName to its error), 404 for an unknown path or
scheduler, 501 for an unknown method.

The www sees the schedulers only through :data:`FORCE_SCHEDULERS`, a callable giving the running
force schedulers by name (objects with ``force(owner, builderNames=None, builderid=None,
**fields) -> (bsid, {builderid: brid})``); it imports nothing of the schedulers package.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

ForceSchedulers = Callable[[], Mapping[str, Any]]
FORCE_SCHEDULERS: web.AppKey[ForceSchedulers] = web.AppKey("force_schedulers")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class _JsonRpcError(Exception):
    def __init__(self, message: Any, code: int, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def _decode(body: bytes, content_type: str) -> tuple[str, Any, dict[str, Any]]:
    if content_type != "application/json":
        raise _JsonRpcError("Invalid content-type (use application/json)", INVALID_REQUEST, 400)
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise _JsonRpcError(f"JSON parse error: {exc!s}", PARSE_ERROR, 400) from exc
    if isinstance(data, list):
        raise _JsonRpcError("JSONRPC batch requests are not supported", INVALID_REQUEST, 400)
    if not isinstance(data, dict):
        raise _JsonRpcError("JSONRPC root object must be an object", INVALID_REQUEST, 400)
    checks: tuple[tuple[str, tuple[type, ...], str], ...] = (
        ("jsonrpc", (str,), "a string"),
        ("method", (str,), "a string"),
        ("id", (str, int, type(None)), "a string, number, or null"),
        ("params", (dict,), "an object"),
    )
    for key, types, what in checks:
        if key not in data:
            raise _JsonRpcError(f"missing key '{key}'", INVALID_REQUEST, 400)
        if not isinstance(data[key], types):
            raise _JsonRpcError(f"'{key}' must be {what}", INVALID_REQUEST, 400)
    if data["jsonrpc"] != "2.0":
        raise _JsonRpcError("only JSONRPC 2.0 is supported", INVALID_REQUEST, 400)
    return data["method"], data["id"], data["params"]


async def _force(request: web.Request, name: str, params: dict[str, Any]) -> Any:
    scheduler = request.app[FORCE_SCHEDULERS]().get(name)
    if scheduler is None:
        raise _JsonRpcError(f"no such forcescheduler: {name!r}", INVALID_REQUEST, 404)
    params["owner"] = "anonymous"  # no authentication yet
    try:
        bsid, brids = await scheduler.force(**params)
    except TypeError as exc:  # a parameter force() does not take
        raise _JsonRpcError(str(exc), INVALID_PARAMS, 400) from exc
    except ValueError as exc:  # the scheduler's ValidationError (CollectedValidationError)
        errors = getattr(exc, "errors", None)
        raise _JsonRpcError(errors or str(exc), INVALID_PARAMS, 400) from exc
    return [bsid, {str(builderid): brid for builderid, brid in brids.items()}]


async def post(request: web.Request) -> web.Response:
    reply: dict[str, Any] = {"jsonrpc": "2.0"}
    path = tuple(request.match_info["path"].strip("/").split("/"))
    try:
        method, ident, params = _decode(await request.read(), request.content_type)
        reply["id"] = ident
        if len(path) != 2 or path[0] != "forceschedulers":
            raise _JsonRpcError(f"invalid path: {'/'.join(path)}", INVALID_REQUEST, 404)
        if method != "force":
            raise _JsonRpcError(f"action: {method} is not supported", METHOD_NOT_FOUND, 501)
        reply["result"] = await _force(request, path[1], params)
        status = 200
    except _JsonRpcError as exc:
        reply["error"] = {"code": exc.code, "message": exc.message}
        status = exc.status
    except Exception as exc:  # a bug of ours: say so in the API's shape, log the details
        log.exception("rest_control_failed", path="/".join(path))
        reply["error"] = {"code": INTERNAL_ERROR, "message": repr(exc)}
        status = 500
    text = json.dumps(reply, sort_keys=True, separators=(",", ":"))
    return web.Response(text=text, status=status, content_type="application/json")


def routes() -> list[web.RouteDef]:
    return [web.post("/api/v2/{path:.*}", post)]

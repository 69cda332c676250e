"""POST /api/v2/<path>: control actions in JSON-RPC 2.0, as Buildbot's REST API takes them.

    POST /api/v2/forceschedulers/force
    {"jsonrpc": "2.0", "method": "force", "id": 1, "params": {"builderid": 3, "reason": "x"}}
    -> {"id": 1, "jsonrpc": "2.0", "result": [bsid, {"3": brid}]}

The actions (docs/rest-api.md, "Control actions"), on any path that names the entity:

- a build (``builds/<id>``, ``builders/<b>/builds/<n>``): ``stop`` (``reason``), ``rebuild``
  (``[bsid, {builderid: brid}]``);
- a build request (``buildrequests/<id>``): ``cancel`` (``reason``), ``set_priority``
  (``priority``, an integer);
- a worker (``workers/<id or name>``, also under ``masters/<m>/`` and ``builders/<b>/``):
  ``pause`` (``reason``), ``unpause``, ``stop`` (graceful shutdown: no new build, then the
  worker is told to shut down once idle), ``kill`` (told to shut down now);
- a scheduler (``schedulers/<id>``, ``masters/<m>/schedulers/<id>``): ``enable``
  (``enabled``, a boolean);
- a force scheduler: ``force``.

Parameters are Buildbot's: ``reason`` defaults to ``"no reason"`` (a paused worker shows it as
its ``pause_reason``); others (``owner``, and ``results`` for ``stop``, which Buildbot's REST
endpoint does not pass on either: a stopped build always ends CANCELLED) are ignored. Where
Buildbot would answer 200 and do nothing, or fail with a 500, buildyard says what is wrong: a
parameter of the wrong type is a 400 (-32602) naming it, a build that is not running here or a
request that is complete a 400 (-32600), an unknown entity a 404, and an action the resource
has not (also on a scheduler, which Buildbot ignores) a 501; none of these changes anything.

As in Buildbot (``www/rest.py`` ``renderJsonRpc``): the body must be ``application/json`` (at
most 1 MiB, else 413; sent within :data:`BODY_TIMEOUT`, else 408); one
object (no batches) with ``jsonrpc`` "2.0", a string ``method``, an ``id`` and an object
``params``; a force's owner is the logged-in user's email (else username), or ``"anonymous"``
without one (so the scheduler takes its username field). Errors answer ``{"jsonrpc", "id",
"error": {"code", "message"}}`` with Buildbot's HTTP statuses: 400 for a bad request (-32700,
-32600) or fields the scheduler refused (-32602, ``message`` maps each field's fullName to its
error), 403 (-32600) for a user without the role ``c['www']['authz']`` asks for the action
(checked once the path and action are known to exist, before anything is done), 404 for an
unknown path or entity, 501 for an action the entity does not have.

The www does the actions through :data:`FORCE_SCHEDULERS` (a callable giving the running force
schedulers by name) and :data:`CONTROL` (a :class:`Control`, which the master implements); it
imports nothing of the schedulers, builds or workers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog
from aiohttp import web

from buildyard.common.connections import BODY_TIMEOUT
from buildyard.common.jsontext import lone_surrogate
from buildyard.master.data.errors import NotFound
from buildyard.master.data.resultspec import MAX_COLUMN_INT, MIN_COLUMN_INT
from buildyard.master.www import auth, rest

log = structlog.get_logger(__name__)

ForceSchedulers = Callable[[], Mapping[str, Any]]
FORCE_SCHEDULERS: web.AppKey[ForceSchedulers] = web.AppKey("force_schedulers")


class Control(Protocol):
    """What the master does for the control actions (it implements this; the www imports
    nothing of builds, workers or schedulers)."""

    async def stop_build(self, buildid: int, reason: str) -> bool: ...

    async def rebuild(self, buildid: int) -> tuple[int, Mapping[int, int]]: ...

    async def cancel_buildrequest(self, brid: int, reason: str) -> bool: ...

    async def set_buildrequest_priority(self, brid: int, priority: int) -> bool: ...

    async def worker_action(self, workerid: int, action: str, reason: str | None) -> None: ...

    async def enable_scheduler(self, schedulerid: int, enabled: bool) -> None: ...


CONTROL: web.AppKey[Control | None] = web.AppKey("control")
# the actions of each resource type (the entity the path names), as Buildbot 4.3 has them
ACTIONS: Mapping[str, tuple[str, ...]] = {
    "build": ("stop", "rebuild"),
    "buildrequest": ("cancel", "set_priority"),
    "worker": ("stop", "kill", "pause", "unpause"),
    "scheduler": ("enable",),
}

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
    except RecursionError as exc:  # the parser recurses once per level of nesting
        raise _JsonRpcError("JSON parse error: nested too deeply", PARSE_ERROR, 400) from exc
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
    try:
        where = lone_surrogate(data["params"])
    except RecursionError as exc:  # as deep as the parser allowed, from deeper in the stack
        raise _JsonRpcError("JSON parse error: nested too deeply", PARSE_ERROR, 400) from exc
    if where is not None:
        named = "a parameter name" if where.startswith("<key>") else repr(where)
        message = f"{named} holds a lone UTF-16 surrogate, which is not text"
        raise _JsonRpcError(message, INVALID_PARAMS, 400)
    return data["method"], data["id"], data["params"]


async def _force(request: web.Request, name: str, params: dict[str, Any]) -> Any:
    scheduler = request.app[FORCE_SCHEDULERS]().get(name)
    if scheduler is None:
        raise _JsonRpcError(f"no such forcescheduler: {name!r}", INVALID_REQUEST, 404)
    params["owner"] = auth.owner(auth.user(request))
    try:
        bsid, brids = await scheduler.force(**params)
    except TypeError as exc:  # a parameter force() does not take
        raise _JsonRpcError(str(exc), INVALID_PARAMS, 400) from exc
    except ValueError as exc:  # the scheduler's ValidationError (CollectedValidationError)
        errors = getattr(exc, "errors", None)
        raise _JsonRpcError(errors or str(exc), INVALID_PARAMS, 400) from exc
    return [bsid, {str(builderid): brid for builderid, brid in brids.items()}]


def _is_field_value(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _force_targets(params: Mapping[str, Any]) -> None:
    """Refuse (400) builder names or a builder id of the wrong shape, before the authorization
    asks the scheduler which builders they name (both must see the same builders); and any
    value a form cannot post (an object, a list of lists): each field's own type is the
    scheduler's to check."""
    for key, value in params.items():
        if key == "builderNames":
            continue
        if not (
            _is_field_value(value)
            or (isinstance(value, list) and all(_is_field_value(v) for v in value))
        ):
            raise _JsonRpcError(
                f"{key!r} must be a string, number, boolean or a list of them, "
                f"not {_json_type(value)}",
                INVALID_PARAMS,
                400,
            )
    names = params.get("builderNames")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(name, str) for name in names)
    ):
        raise _JsonRpcError("'builderNames' must be a list of strings", INVALID_PARAMS, 400)
    builderid = params.get("builderid")
    if builderid is not None and not (
        (isinstance(builderid, int) and not isinstance(builderid, bool))
        or (isinstance(builderid, str) and builderid.isdigit())
    ):
        raise _JsonRpcError("'builderid' must be an integer", INVALID_PARAMS, 400)


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list of lists or objects"
    return type(value).__name__


async def _authorize(
    request: web.Request, path: tuple[str, ...], method: str, params: Mapping[str, Any]
) -> None:
    """Refuse (403) an action the user has not the role for, before anything is done."""
    try:
        await auth.check(
            request,
            request.app[rest.DATA_API],
            path,
            method,
            params,
            force_schedulers=request.app[FORCE_SCHEDULERS],
        )
    except auth.Forbidden as exc:
        raise _JsonRpcError(exc.message, INVALID_REQUEST, 403) from exc


def _reason(params: Mapping[str, Any]) -> str:
    reason = params.get("reason", "no reason")
    if not isinstance(reason, str):
        raise _JsonRpcError("'reason' must be a string", INVALID_PARAMS, 400)
    return reason


async def _act(request: web.Request, path: tuple[str, ...], method: str, params: Any) -> Any:
    """Run ``method`` on the entity ``path`` names (a build, request, worker or scheduler).

    As in Buildbot, the path is checked first (404), then the action (501), then the entity
    (404); the parameters are checked before anything is done."""
    api = request.app[rest.DATA_API]
    try:
        endpoint = api.endpoint(path)
    except NotFound as exc:
        raise _JsonRpcError(str(exc), INVALID_REQUEST, 404) from exc
    rtype = endpoint.rtype.name
    if endpoint.item is None or method not in ACTIONS.get(rtype, ()):
        raise _JsonRpcError(f"action: {method} is not supported", METHOD_NOT_FOUND, 501)
    control = request.app[CONTROL]
    if control is None:
        raise _JsonRpcError("this master takes no control actions", METHOD_NOT_FOUND, 501)
    await _authorize(request, path, method, params)
    try:
        entity = await api.get(path)
    except NotFound as exc:
        raise _JsonRpcError(str(exc), INVALID_REQUEST, 404) from exc
    assert isinstance(entity, dict)
    if rtype == "build":
        if method == "rebuild":
            bsid, brids = await control.rebuild(entity["buildid"])
            return [bsid, {str(builderid): brid for builderid, brid in brids.items()}]
        if not await control.stop_build(entity["buildid"], _reason(params)):
            raise _JsonRpcError("the build is not running on this master", INVALID_REQUEST, 400)
        return None
    if rtype == "buildrequest":
        brid = entity["buildrequestid"]
        if method == "set_priority":
            priority = params.get("priority")
            if not isinstance(priority, int) or isinstance(priority, bool):
                raise _JsonRpcError("'priority' must be an integer", INVALID_PARAMS, 400)
            if not MIN_COLUMN_INT <= priority <= MAX_COLUMN_INT:  # what the database holds
                raise _JsonRpcError("'priority' is out of range", INVALID_PARAMS, 400)
            if not await control.set_buildrequest_priority(brid, priority):
                raise _JsonRpcError("the build request is complete", INVALID_REQUEST, 400)
            return None
        if not await control.cancel_buildrequest(brid, _reason(params)):
            raise _JsonRpcError(
                "the build request is complete or built by another master", INVALID_REQUEST, 400
            )
        return None
    if rtype == "worker":
        reason = _reason(params) if method == "pause" else None
        await control.worker_action(entity["workerid"], method, reason)
        return None
    enabled = params.get("enabled")
    if not isinstance(enabled, bool):
        raise _JsonRpcError("'enabled' must be true or false", INVALID_PARAMS, 400)
    await control.enable_scheduler(entity["schedulerid"], enabled)
    return None


async def _body(request: web.Request) -> bytes:
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _JsonRpcError(exc.text or "the body is too large", INVALID_REQUEST, 413) from exc
    except TimeoutError as exc:
        raise _JsonRpcError(
            f"the body did not arrive within {BODY_TIMEOUT:g} s", INVALID_REQUEST, 408
        ) from exc


async def post(request: web.Request) -> web.Response:
    reply: dict[str, Any] = {"jsonrpc": "2.0"}
    path = tuple(request.match_info["path"].strip("/").split("/"))
    try:
        method, ident, params = _decode(await _body(request), request.content_type)
        reply["id"] = ident
        if len(path) == 2 and path[0] == "forceschedulers":
            if method != "force":
                raise _JsonRpcError(f"action: {method} is not supported", METHOD_NOT_FOUND, 501)
            _force_targets(params)
            await _authorize(request, path, method, params)
            reply["result"] = await _force(request, path[1], params)
        else:
            reply["result"] = await _act(request, path, method, params)
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

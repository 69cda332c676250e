"""The base of every dialect, the ``base`` dialect itself, and what the dialects share.

A handler is built once per web-server configuration, lazily, the first time its dialect is
asked for: ``Handler(master, options)`` as Buildbot builds it (``master`` is the running master,
for users' handlers; ``options`` the dialect's value in ``c['www']['change_hook_dialects']``).
The web server then hands it the :class:`HookContext` (:meth:`BaseHookHandler.bind`), through
which buildyard's own handlers read secrets and find pollers.
"""

from __future__ import annotations

import calendar
import datetime
import fnmatch
import json
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol

import structlog

from buildyard.common import awaitables
from buildyard.common.jsontext import replace_lone_surrogates
from buildyard.master.changes.hooks.request import HookError, HookRequest
from buildyard.master.data.resultspec import MAX_COLUMN_INT, MIN_COLUMN_INT
from buildyard.master.model.properties import Properties, SecretsOnly, is_renderable, render

# What getChanges gives: the changes (dicts of addChange keywords) and their "src" ("git", ...)
Changes = tuple[list[dict[str, Any]], str | None]


class Pollable(Protocol):
    name: str

    def force(self) -> None:
        """Poll as soon as possible, without waiting for the poll."""


class HookContext(Protocol):
    """What the master offers to hooks beyond the request."""

    async def secret(self, name: str) -> str | None:
        """Secret ``name`` from c['secretsProviders'], or None."""
        ...

    def pollers(self) -> Mapping[str, Pollable]:
        """The change sources running here that can be told to poll, by name."""
        ...


class NoContext:
    """The context of a handler the web server has not bound (no secrets, no pollers)."""

    async def secret(self, name: str) -> str | None:
        return None

    def pollers(self) -> Mapping[str, Pollable]:
        return {}


log = structlog.get_logger(__name__)


def storable_time(epoch: int, value: Any, **where: str) -> int | None:
    """``epoch``, seconds read from a forge's ``value``, if the database can hold them; else
    None (the change is stamped "now") and a warning naming ``where`` (``hook=``, ...) and the
    value: one commit dated past 2038 or before 1901 does not lose the whole push. (The
    when_timestamp column is a 32-bit INTEGER on PostgreSQL.)"""
    if MIN_COLUMN_INT <= epoch <= MAX_COLUMN_INT:
        return epoch
    log.warning(
        "change_time_out_of_range",
        **where,
        value=value,
        reason=f"not epoch seconds from {MIN_COLUMN_INT} to {MAX_COLUMN_INT}:"
        " the change is stamped now",
    )
    return None


def field(payload: Any, *path: str | int) -> Any:
    """``payload[path[0]][path[1]]...``; a missing step is a :class:`HookError` naming the
    whole path, so a payload of another shape gets a 400 that says what it lacks."""
    value = payload
    for i, step in enumerate(path):
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            where = ".".join(str(s) for s in path[: i + 1])
            raise HookError(f"the payload has no {where!r}") from None
    return value


def parse_json(data: bytes | str, hook: str, what: str = "payload") -> Any:
    """The JSON ``data``; a lone UTF-16 surrogate in it (JSON may escape half a pair, as a
    sender cutting text mid-pair does), which no database or log can encode, is replaced by
    U+FFFD with a warning naming ``hook`` and where, rather than the whole payload refused."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HookError(f"the {what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise HookError(f"the {what} is not valid JSON: nested too deeply") from None
    value, found = replace_lone_surrogates(value)
    if found:
        log.warning(
            "change_hook_lone_surrogates_replaced",
            hook=hook,
            what=what,
            where=found[:10],
            count=len(found),
        )
    return value


def timestamp(value: Any, hook: str) -> int | None:
    """Epoch seconds of an ISO 8601 time as forges send them (a time without an offset is
    UTC, as Buildbot takes it); None, with a warning naming ``hook``, for one the database
    cannot hold (:func:`storable_time`)."""
    if not isinstance(value, str):
        raise HookError(f"the time {value!r} is not an ISO 8601 string")
    try:
        when = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise HookError(f"the time {value!r} is not an ISO 8601 time") from None
    return storable_time(calendar.timegm(when.utctimetuple()), value, hook=hook)


def media_type(request: HookRequest) -> str:
    return (request.header("Content-Type") or "").split(";", 1)[0].strip().lower()


class BaseHookHandler:
    """``buildbot.www.hooks.base.BaseHookHandler``, and the ``base`` dialect: one change from
    the request's arguments (``author`` or ``who``, ``comments``, ``revision``, ``branch``,
    ``when_timestamp`` or ``when``, ``category``, ``revlink``, ``repository``, ``project``,
    ``codebase``, ``committer``, and ``files`` and ``properties`` as JSON)."""

    def __init__(self, master: Any, options: Any) -> None:
        self.master = master
        self.options = options
        self.context: HookContext = NoContext()

    def bind(self, context: HookContext) -> None:
        """The web server's context; set before the first request."""
        self.context = context

    async def render_option(self, value: Any, **properties: Any) -> Any:
        """An option's value, rendered if it is a renderable (``util.Secret('...')``, ...)."""
        if not is_renderable(value):
            return value
        props = Properties()
        for name, prop in properties.items():
            props.set_property(name, prop, "change_hook")
        props.build = SecretsOnly(self.context.secret)
        return await render(value, props)

    async def getChanges(self, request: HookRequest) -> Changes:
        def text(*names: str) -> str | None:
            for name in names:
                value = request.arg(name)
                if value:
                    return value
            return None

        files = parse_json(text("files") or "[]", "base", "'files' argument")
        properties = parse_json(text("properties") or "{}", "base", "'properties' argument")
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise HookError("the 'files' argument must be a JSON list of strings")
        if not isinstance(properties, dict):
            raise HookError("the 'properties' argument must be a JSON object")
        when = text("when_timestamp", "when")
        try:
            when_timestamp = float(when) if when is not None else None
        except ValueError:
            raise HookError(f"'when_timestamp' must be a number, not {when!r}") from None
        if when_timestamp is not None and not MIN_COLUMN_INT <= when_timestamp <= MAX_COLUMN_INT:
            # NaN fails both comparisons
            raise HookError(
                f"'when_timestamp' must be epoch seconds from {MIN_COLUMN_INT} to {MAX_COLUMN_INT},"
                f" not {when!r}"
            )
        change = {
            "author": text("author", "who"),
            "committer": text("committer"),
            "files": files,
            "comments": text("comments"),
            "revision": text("revision"),
            "when_timestamp": when_timestamp,
            "branch": text("branch"),
            "category": text("category"),
            "revlink": text("revlink"),
            "properties": properties,
            "repository": text("repository") or "",
            "project": text("project") or "",
            "codebase": text("codebase"),
        }
        if not change["author"]:
            raise HookError("the base hook needs an 'author' (or 'who') argument")
        return [change], None


class PullRequestProperties:
    """Buildbot's ``PullRequestMixin``: the payload's fields whose dotted name (under
    ``property_basename``) matches one of ``external_property_whitelist`` (fnmatch patterns),
    as properties."""

    property_basename = "github"
    external_property_whitelist: Sequence[str] = ()
    external_property_denylist: Sequence[str] = ()

    def extractProperties(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def walk(base: str, node: Mapping[str, Any]) -> None:
            for key, value in node.items():
                name = f"{base}.{key}"
                if name in self.external_property_denylist:
                    continue
                if isinstance(value, dict):
                    walk(name, value)
                elif any(fnmatch.fnmatch(name, p) for p in self.external_property_whitelist):
                    found[name] = value

        walk(self.property_basename, payload)
        return found


# Buildbot's name for it (buildbot.util.pullrequest)
PullRequestMixin = PullRequestProperties


def codebase_of(codebase: Any, payload: Any) -> dict[str, Any]:
    """The ``codebase`` keyword of a change: the option's value, or its result when it is a
    callable given the payload; nothing when the option is None."""
    if callable(codebase):
        return {"codebase": codebase(payload)}
    if codebase is not None:
        return {"codebase": codebase}
    return {}


_CHANGE_KEYS = frozenset(
    {
        "author",
        "committer",
        "files",
        "comments",
        "revision",
        "when_timestamp",
        "branch",
        "category",
        "revlink",
        "properties",
        "repository",
        "codebase",
        "project",
    }
)


class BadChange(Exception):
    """A handler returned a change that cannot be recorded (the handler's fault: a 500)."""


def _text(value: Any, key: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise BadChange(f"its {key!r} is {type(value).__name__}, not a string")


def change_arguments(chdict: Mapping[str, Any]) -> dict[str, Any]:
    """A handler's change dict as ``Updates.add_change`` keywords, as Buildbot's hook resource
    and ``addChange`` convert it: bytes decoded, a datetime ``when_timestamp`` in epoch seconds,
    each property's source ``"Change"``, a callable ``category`` called with the change."""
    unknown = sorted(str(k) for k in chdict if k not in _CHANGE_KEYS)
    if unknown:
        raise BadChange(f"it has keys addChange does not take: {', '.join(unknown)}")
    args: dict[str, Any] = {}
    for key in ("comments", "committer", "revision", "branch", "revlink", "codebase"):
        if key in chdict:
            args[key] = _text(chdict[key], key)
    author = _text(chdict.get("author"), "author")
    if not author:
        raise BadChange("it has no author")
    args["author"] = author
    args["comments"] = args.get("comments") or ""
    for key in ("repository", "project"):
        args[key] = _text(chdict.get(key), key) or ""
    files = chdict.get("files") or []
    args["files"] = [_text(f, "files") or "" for f in files]
    when = chdict.get("when_timestamp")
    if isinstance(when, datetime.datetime):
        when = calendar.timegm(when.utctimetuple())
    elif when is not None and not isinstance(when, int | float):
        raise BadChange(f"its when_timestamp is {when!r}")
    if when is not None and not MIN_COLUMN_INT <= when <= MAX_COLUMN_INT:
        raise BadChange(f"its when_timestamp {when!r} is not epoch seconds the database can hold")
    args["when_timestamp"] = int(when) if when is not None else None
    properties = chdict.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise BadChange("its properties are not a dict")
    args["properties"] = {
        _text(k, "property name") or "": (v, "Change") for k, v in properties.items()
    }
    category = chdict.get("category")
    if callable(category):
        category = category(dict(chdict))
    args["category"] = _text(category, "category")
    return args


async def resolve(result: Changes | Awaitable[Changes]) -> Changes:
    """What getChanges returned, awaited if it is awaitable (users' handlers may be either, or
    return a Deferred under the ``buildyard[twisted]`` extra)."""
    changes: Changes = await awaitables.resolve(result)
    return changes

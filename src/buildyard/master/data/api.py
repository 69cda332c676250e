"""The read side of the data API: ``get(path, spec)`` by Buildbot's path patterns.

Paths are tuples of segments (``("masters", "3")``) or slash-joined strings. An integer segment
matches ``n:`` placeholders first, as in Buildbot. Control actions (force, stop, ...) register
handlers here later; reading never writes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from buildyard.master.data.errors import InvalidQuery, NotFound
from buildyard.master.data.resources import (
    build_data,
    builders,
    buildrequests,
    builds,
    buildsets,
    changes,
    changesources,
    codebases,
    logs,
    masters,
    projects,
    properties,
    root,
    schedulers,
    sourcestamps,
    steps,
    test_results,
    workers,
)
from buildyard.master.data.resources.base import Collection, Endpoint, Item, RawData
from buildyard.master.data.resultspec import (
    IDENTIFIER_RE,
    MAX_COLUMN_INT,
    MIN_COLUMN_INT,
    ResultSpec,
    parse,
)
from buildyard.master.db.connector import Database

_INT_RE = re.compile(r"^-?\d+$")


class DataAPI:
    def __init__(self, *, db: Database, endpoints: Iterable[Endpoint] = ()) -> None:
        self._db = db
        self._endpoints: list[Endpoint] = [
            *masters.ENDPOINTS,
            *builders.ENDPOINTS,
            *builds.ENDPOINTS,
            *steps.ENDPOINTS,
            *logs.ENDPOINTS,
            *properties.ENDPOINTS,
            *buildrequests.ENDPOINTS,
            *buildsets.ENDPOINTS,
            *changes.ENDPOINTS,
            *sourcestamps.ENDPOINTS,
            *workers.ENDPOINTS,
            *schedulers.ENDPOINTS,
            *changesources.ENDPOINTS,
            *build_data.ENDPOINTS,
            *test_results.ENDPOINTS,
            *projects.ENDPOINTS,
            *codebases.ENDPOINTS,
            *endpoints,
        ]
        # what the API offers (``/``, ``application.spec``), read from the list when asked
        self._endpoints.extend(root.endpoints(lambda: self._endpoints))

    def register(self, *endpoints: Endpoint) -> None:
        self._endpoints.extend(endpoints)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every endpoint, in matching order (what the OpenAPI description is made from)."""
        return tuple(self._endpoints)

    def _match(self, path: Sequence[str]) -> tuple[Endpoint, dict[str, Any]]:
        # first match wins: integer (n:) patterns are listed before string (s:) ones
        for ep in self._endpoints:
            if len(ep.pattern) != len(path):
                continue
            kw: dict[str, Any] = {}
            for pat, seg in zip(ep.pattern, path, strict=True):
                if ":" not in pat:
                    if pat != seg:
                        break
                    continue
                kind, name = pat.split(":", 1)
                if kind == "n":
                    # an id no database column can hold matches nothing (404), not a crash
                    if not _INT_RE.match(seg) or not MIN_COLUMN_INT <= int(seg) <= MAX_COLUMN_INT:
                        break
                    kw[name] = int(seg)
                elif kind == "i":
                    if not IDENTIFIER_RE.match(seg) or len(seg) > 50:
                        break
                    kw[name] = seg
                else:
                    kw[name] = seg
            else:
                return ep, kw
        raise NotFound(f"invalid path: {'/'.join(path)}")

    def endpoint(self, path: str | Sequence[str]) -> Endpoint:
        return self._match(_split(path))[0]

    async def get(
        self, path: str | Sequence[str], spec: ResultSpec | None = None
    ) -> Collection | Item:
        """A collection (with its total) or one item; NotFound if there is no such thing."""
        ep, kw = self._match(_split(path))
        spec = spec or ResultSpec()
        if ep.collection is not None:
            return await ep.collection(self._db, kw, spec)
        if ep.item is None:  # a download: see get_raw
            raise NotFound(f"invalid path: {'/'.join(_split(path))}")
        if not spec.is_empty and spec.filters:
            raise InvalidQuery("this is not a collection")
        item = await ep.item(self._db, kw)
        if item is None:
            raise NotFound(f"no such {ep.rtype.name}: {'/'.join(_split(path))}")
        if spec.properties and ep.properties is not None:
            item = await ep.properties(self._db, item, spec.properties)
        return spec.select(item)

    async def get_raw(self, path: str | Sequence[str]) -> RawData:
        """The download a raw path names (``builds/<id>/data/<name>/value``); NotFound if it
        names none."""
        ep, kw = self._match(_split(path))
        raw = None if ep.raw is None else await ep.raw(self._db, kw)
        if raw is None:
            raise NotFound(f"no such {ep.rtype.name}: {'/'.join(_split(path))}")
        return raw

    async def raw_log(self, path: str | Sequence[str]) -> logs.RawLog:
        """The log a ``.../raw`` or ``.../raw_inline`` path names (give the path without that
        last segment); NotFound if the path names no log."""
        ep, kw = self._match(_split(path))
        if ep.rtype is not logs.LOG or ep.item is None:
            raise NotFound(f"invalid path: {'/'.join(_split(path))}")
        return await logs.raw_log(self._db, kw)

    def raw_log_text(self, raw: logs.RawLog) -> AsyncIterator[str]:
        """The text of a raw download in pieces (a batch of lines each)."""
        return logs.raw_chunks(self._db, raw)

    async def get_with_args(
        self, path: str | Sequence[str], args: Mapping[str, Sequence[str]]
    ) -> Collection | Item:
        """``get`` with REST query arguments parsed against the endpoint's resource type."""
        ep = self.endpoint(path)
        return await self.get(path, parse(args, ep.rtype.value_types()))


def _split(path: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(path, str):
        return tuple(path.strip("/").split("/")) if path.strip("/") else ()
    return tuple(path)

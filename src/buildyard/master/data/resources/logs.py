"""The ``log`` and ``logchunk`` resources, and raw log downloads.

A log is named by its id or by its step (any form of :data:`STEP_PREFIXES`) and slug. Its lines
are read as a ``logchunk`` (``.../contents``, docs/rest-api.md, "Log contents": ``offset`` and
``limit`` count lines) or streamed whole by :func:`raw_chunks` a few stored chunks at a time, so a
download of any size holds one batch in memory.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from buildyard.master.data import shapes
from buildyard.master.data.errors import NotFound
from buildyard.master.data.resources.base import Collection, Endpoint, Item, ResourceType
from buildyard.master.data.resources.steps import STEP_PREFIXES, resolve_step
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.model.logs import Log, LogType

LOG = ResourceType(
    name="log",
    plural="logs",
    fields={
        "logid": FieldType.INTEGER,
        "name": FieldType.STRING,
        "slug": FieldType.IDENTIFIER,
        "stepid": FieldType.INTEGER,
        "complete": FieldType.BOOLEAN,
        "num_lines": FieldType.INTEGER,
        "type": FieldType.STRING,
    },
)
LOGCHUNK = ResourceType(
    name="logchunk",
    plural="logchunks",
    fields={
        "logid": FieldType.INTEGER,
        "firstline": FieldType.INTEGER,
        "content": FieldType.STRING,
    },
)

# the ways to name one log; kw: logid, or a step's with log_slug
LOG_PREFIXES: tuple[tuple[str, ...], ...] = (
    ("logs", "n:logid"),
    *((*p, "logs", "i:log_slug") for p in STEP_PREFIXES),
)
# stored chunks (64 KB of text at most each) read per query by a raw download
RAW_BATCH_CHUNKS = 16
# a stdio line's stream letter, dropped from downloads
_STREAM_TAG = re.compile(r"^.", re.MULTILINE)


async def resolve_log(db: Database, kw: Mapping[str, Any]) -> Log | None:
    """The log a path names (see :data:`LOG_PREFIXES`), or None."""
    if "logid" in kw:
        return await db.logs.get_log(kw["logid"])
    step = await resolve_step(db, kw)
    if step is None:
        return None
    return await db.logs.get_log_by_slug(step.id, kw["log_slug"])


async def _logs(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    # a step has few logs: filtered, ordered and paged in Python
    step = await resolve_step(db, kw)
    if step is None:
        return Collection(items=[], total=0)
    items, total = spec.apply([shapes.log(lg) for lg in await db.logs.get_logs(step.id)])
    return Collection(items=items, total=total)


async def _log(db: Database, kw: Mapping[str, Any]) -> Item | None:
    lg = await resolve_log(db, kw)
    return None if lg is None else shapes.log(lg)


async def _contents(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    """One logchunk (``meta`` without a total): lines ``offset`` .. ``offset + limit - 1``, or
    to the end of the log without ``limit``; nothing to show (an empty log, a range past the
    start) is "not found", as in Buildbot."""
    lg = await resolve_log(db, kw)
    if lg is None:
        raise NotFound("no such log")
    first = spec.offset or 0
    last = max(0, lg.num_lines - 1) if spec.limit is None else first + spec.limit - 1
    if first < 0 or last < 0 or first > last:
        raise NotFound(f"no lines {first}..{last} in log {lg.id}")
    # lines past the end are none (and a bound past any line count is not for the database)
    content = await db.logs.get_log_lines(lg.id, first, min(last, lg.num_lines - 1))
    chunk = {"logid": lg.id, "firstline": first, "content": content}
    return Collection(items=[ResultSpec(fields=spec.fields).select(chunk)], total=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RawLog:
    """What a raw download needs before its body: the log and the names around it."""

    log: Log
    builder_name: str
    build_number: int
    worker_name: str
    step_name: str

    @property
    def content_type(self) -> str:
        return "text/html" if self.log.type is LogType.HTML else "text/plain"

    @property
    def filename(self) -> str:
        return (
            f"{self.builder_name}_build_{self.build_number}"
            f"_step_{self.step_name}_log_{self.log.slug}"
        )


async def raw_log(db: Database, kw: Mapping[str, Any]) -> RawLog:
    """The log a ``.../raw`` path names; NotFound if there is none."""
    lg = await resolve_log(db, kw)
    step = None if lg is None else await db.steps.get_step(lg.stepid)
    build = None if step is None else await db.builds.get_build(step.buildid)
    if lg is None or step is None or build is None:
        raise NotFound("no such log")
    builder = await db.builders.get_builder(build.builderid)
    worker = None if build.workerid is None else await db.workers.get_worker(build.workerid)
    return RawLog(
        log=lg,
        builder_name=builder.name if builder else str(build.builderid),
        build_number=build.number,
        worker_name=worker.name if worker else "",
        step_name=step.name,
    )


async def raw_chunks(
    db: Database, raw: RawLog, *, batch: int = RAW_BATCH_CHUNKS
) -> AsyncIterator[str]:
    """The log's text for download, ``batch`` stored chunks per piece (so memory stays flat
    whatever the log's size): stdio logs get a preamble and lose their stream tags
    (``o``/``e``/``h``)."""
    lg = raw.log
    stdio = lg.type is LogType.STDIO
    if stdio:
        yield (
            f"Builder: {raw.builder_name}\nBuild number: {raw.build_number}\n"
            f"Worker name: {raw.worker_name}\n"
        )
    line = 0
    while line < lg.num_lines:
        text, after = await db.logs.get_log_text_from(lg.id, line, chunks=batch)
        if after <= line:
            return  # fewer lines stored than counted (the log changed under us)
        if after > lg.num_lines:  # lines appended since the download began: not ours
            text = "".join(f"{x}\n" for x in text.split("\n")[: lg.num_lines - line])
        line = after
        yield _STREAM_TAG.sub("", text) if stdio else text


ENDPOINTS = (
    *(Endpoint(pattern=(*p, "logs"), rtype=LOG, collection=_logs) for p in STEP_PREFIXES),
    *(Endpoint(pattern=p, rtype=LOG, item=_log) for p in LOG_PREFIXES),
    *(
        Endpoint(pattern=(*p, "contents"), rtype=LOGCHUNK, collection=_contents)
        for p in LOG_PREFIXES
    ),
)

"""The logs connector: step logs and their lines, stored in chunks.

Lines are appended whole (each ends with ``\\n``) and stored in ``logchunks`` rows covering
``first_line..last_line`` (0-based, inclusive): the lines joined with ``\\n`` without the final
one, at most :data:`MAX_CHUNK_LINES` lines and :data:`MAX_CHUNK_BYTES` bytes per row. A line too
long for a row of its own is cut to 65535 bytes (at a character boundary). Stdio logs keep each
line's one-character stream prefix exactly as the caller gave it.

An append may ask for a compression method (:mod:`.compression`: gz, bz2, lz4, zstd, br, with
Buildbot's ids and formats): its chunks big enough to gain are stored compressed at once, the
others raw (``compressed = 0``). When the log is finished, :meth:`LogsRepository.compress_log`
merges runs of small raw chunks and stores them compressed. A chunk with an unknown compression
id is refused with a DbError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import compression
from buildyard.master.db import schema as t
from buildyard.master.db.base import Repository
from buildyard.master.db.errors import LogSlugExists
from buildyard.master.db.prepared import Prepared
from buildyard.master.model.logs import Log, LogType

MAX_CHUNK_BYTES = 65536
MAX_CHUNK_LINES = 1000
MAX_SLUG_LENGTH = 50
RAW = compression.RAW
compression_id = compression.method_id
# (append_log's parameter ``compression`` hides the module there)
_pack = compression.pack
# chunks this big are compressed as they are appended; smaller ones wait for compress_log
COMPRESS_FROM = 8192
# appends this big are compressed in a thread (zlib, bz2, lz4 and zstd release the GIL)
THREAD_FROM = 256 * 1024

_l, _lc = t.logs, t.logchunks
_LOG = Prepared(sa.select(_l).where(_l.c.id == sa.bindparam("logid")))
_BY_ID = _l.c.id == sa.bindparam("logid")
_ADD = Prepared(
    _l.insert().values(
        name=sa.bindparam("name"),
        slug=sa.bindparam("slug"),
        stepid=sa.bindparam("stepid"),
        complete=0,
        num_lines=0,
        type=sa.bindparam("type"),
    )
)
_BUMP = Prepared(
    _l.update()
    .where(_BY_ID)
    .values(num_lines=_l.c.num_lines + sa.bindparam("count"))
    .returning(*_l.c)
)
_FINISH = Prepared(_l.update().where(_BY_ID).values(complete=1))
_ADD_CHUNK = Prepared(
    _lc.insert().values(
        logid=sa.bindparam("logid"),
        first_line=sa.bindparam("first_line"),
        last_line=sa.bindparam("last_line"),
        content=sa.bindparam("content"),
        compressed=sa.bindparam("compressed"),
    )
)
_OF_LOG = _lc.c.logid == sa.bindparam("logid")
_CHUNK_SIZES = Prepared(
    sa.select(
        _lc.c.first_line,
        _lc.c.last_line,
        _lc.c.compressed,
        sa.func.length(_lc.c.content).label("size"),
    )
    .where(_OF_LOG)
    .order_by(_lc.c.first_line)
)
_IN_RANGE = sa.and_(
    _OF_LOG,
    _lc.c.first_line >= sa.bindparam("first"),
    _lc.c.last_line <= sa.bindparam("last"),
)
_CHUNKS_IN_RANGE = Prepared(
    sa.select(_lc.c.content, _lc.c.compressed).where(_IN_RANGE).order_by(_lc.c.first_line)
)
_DELETE_RANGE = Prepared(_lc.delete().where(_IN_RANGE))


def _log(row: sa.Row[Any]) -> Log:
    return Log(
        id=row.id,
        name=row.name,
        slug=row.slug,
        stepid=row.stepid,
        complete=bool(row.complete),
        num_lines=row.num_lines,
        type=LogType(row.type),
    )


def _truncate(line: bytes) -> bytes:
    # drop a multi-byte character cut in half, never a whole one
    return line[: MAX_CHUNK_BYTES - 1].decode("utf-8", "ignore").encode("utf-8")


def chunk_lines(content: str) -> Iterator[tuple[bytes, int]]:
    """Split whole lines into stored chunks: (content without the last newline, line count).

    A chunk takes lines while it stays within both limits (counting each line's newline); a
    line that does not fit in a chunk of its own gets one, truncated if needed. The text is
    encoded once and cut at newlines found by ``bytes`` methods, so a big append costs a few
    operations per chunk, not per line.
    """
    if not content.endswith("\n"):
        raise ValueError("log content must be whole lines, ending with a newline")
    data = content.encode("utf-8")
    pos, end = 0, len(data)
    while pos < end:
        stop = pos + MAX_CHUNK_BYTES
        if stop >= end:
            cut = end
        else:
            newline = data.rfind(b"\n", pos, stop)
            if newline < 0:  # one line longer than a chunk
                newline = data.index(b"\n", pos)
                line = data[pos:newline]
                yield (_truncate(line) if len(line) > MAX_CHUNK_BYTES else line), 1
                pos = newline + 1
                continue
            cut = newline + 1
        count = data.count(b"\n", pos, cut)
        if count > MAX_CHUNK_LINES:
            newline = pos - 1
            for _ in range(MAX_CHUNK_LINES):
                newline = data.index(b"\n", newline + 1)
            cut, count = newline + 1, MAX_CHUNK_LINES
        yield data[pos : cut - 1], count
        pos = cut


def _decompress(content: bytes, compressed: int) -> bytes:
    return compression.unpack(content, compressed)


def _pack_chunks(chunks: Iterable[tuple[bytes, int]], method: int) -> list[tuple[bytes, int, int]]:
    """(stored content, line count, compression id) for each chunk of a live append: packed
    with ``method`` (at its live level) when it is big enough to gain and does shrink, raw
    otherwise."""
    out = []
    for raw, count in chunks:
        if method != RAW and len(raw) >= COMPRESS_FROM:
            packed = compression.pack(raw, method, live=True)
            if len(packed) < len(raw):
                out.append((packed, count, method))
                continue
        out.append((raw, count, RAW))
    return out


class LogsRepository(Repository):
    async def add_log(
        self,
        stepid: int,
        name: str,
        slug: str,
        type: LogType | str,
        *,
        conn: AsyncConnection | None = None,
    ) -> int:
        """A new, empty log; :class:`LogSlugExists` if the step has one with this slug."""
        kind = LogType(type)
        if kind is LogType.DELETED:
            raise ValueError("a log cannot be created deleted")
        if len(slug) > MAX_SLUG_LENGTH:
            raise ValueError(f"log slug {slug!r} is longer than {MAX_SLUG_LENGTH} characters")
        try:
            async with self._write(conn) as c, c.begin_nested():
                added = await _ADD.execute(
                    c, {"name": name, "slug": slug, "stepid": stepid, "type": kind.value}
                )
                return added.inserted_id()
        except sa.exc.IntegrityError as exc:
            raise LogSlugExists(f"step {stepid} already has a log with slug {slug!r}") from exc

    async def get_log(self, logid: int, *, conn: AsyncConnection | None = None) -> Log | None:
        async with self._read(conn) as c:
            row = (await _LOG.execute(c, {"logid": logid})).first()
        return _log(row) if row else None

    async def get_log_by_slug(
        self, stepid: int, slug: str, *, conn: AsyncConnection | None = None
    ) -> Log | None:
        stmt = sa.select(_l).where(_l.c.stepid == stepid, _l.c.slug == slug)
        async with self._read(conn) as c:
            row = (await c.execute(stmt)).first()
        return _log(row) if row else None

    async def get_logs(self, stepid: int, *, conn: AsyncConnection | None = None) -> list[Log]:
        """The step's logs in creation order."""
        stmt = sa.select(_l).where(_l.c.stepid == stepid).order_by(_l.c.id)
        async with self._read(conn) as c:
            return [_log(r) for r in await c.execute(stmt)]

    async def append_log(
        self,
        logid: int,
        content: str,
        *,
        compression: str | int = RAW,
        last: bool = False,
        conn: AsyncConnection | None = None,
    ) -> tuple[Log, int] | None:
        """Append whole lines; returns the log as it is after them and their count (they are
        lines ``num_lines - count .. num_lines - 1``), or None if there is no such log.
        Concurrent appends to one log are serialized.

        With a ``compression`` method, each chunk of at least :data:`COMPRESS_FROM` bytes is
        stored compressed when that makes it smaller (big appends are packed in a thread, off
        the event loop); smaller chunks stay raw until :meth:`compress_log` merges them.

        ``last``: these are the log's last lines: then the log is also compressed
        (:meth:`compress_log`) and finished (:meth:`finish_log`) in the same transaction, and
        the log returned is as it was before it was marked complete. A log whose only lines
        these are, and fit one small chunk, gets that chunk stored as compress_log would leave
        it, without reading it back.
        """
        method = compression if isinstance(compression, int) else compression_id(compression)
        pieces = list(chunk_lines(content))
        total = sum(count for _, count in pieces)
        if method != RAW and len(content) >= THREAD_FROM:
            chunks = await asyncio.to_thread(_pack_chunks, pieces, method)
        else:
            chunks = _pack_chunks(pieces, method)
        async with self._write(conn) as c:
            row = (await _BUMP.execute(c, {"logid": logid, "count": total})).first()
            if row is None:
                return None
            line = row.num_lines - total
            alone = last and line == 0 and len(chunks) == 1 and chunks[0][2] == RAW
            if alone and method != RAW:
                # what compress_log does to a log of one raw chunk: pack it (at the full
                # level) if that shrinks it and fits a row, else leave it raw
                raw, count, _ = chunks[0]
                packed = _pack(raw, method)
                if len(packed) < len(raw) and len(packed) <= MAX_CHUNK_BYTES:
                    chunks = [(packed, count, method)]
            rows = []
            for stored, count, packing in chunks:
                rows.append(
                    {
                        "logid": logid,
                        "first_line": line,
                        "last_line": line + count - 1,
                        "content": stored,
                        "compressed": packing,
                    }
                )
                line += count
            await _ADD_CHUNK.execute_many(c, rows)
            if last:
                if not alone:
                    await self.compress_log(logid, method, conn=c)
                await _FINISH.execute(c, {"logid": logid})
        return _log(row), total

    async def get_log_lines(
        self, logid: int, first_line: int, last_line: int, *, conn: AsyncConnection | None = None
    ) -> str:
        """Lines ``first_line..last_line`` (inclusive), each ending with a newline."""
        if last_line < first_line:
            return ""
        stmt = (
            sa.select(_lc.c.first_line, _lc.c.content, _lc.c.compressed)
            .where(
                _lc.c.logid == logid,
                _lc.c.first_line <= last_line,
                _lc.c.last_line >= first_line,
            )
            .order_by(_lc.c.first_line)
        )
        out: list[str] = []
        async with self._read(conn) as c:
            for row in await c.execute(stmt):
                text = _decompress(bytes(row.content), row.compressed).decode("utf-8", "replace")
                lines = text.split("\n")
                start = max(first_line - row.first_line, 0)
                stop = last_line - row.first_line + 1
                out.extend(f"{line}\n" for line in lines[start:stop])
        return "".join(out)

    async def get_log_text_from(
        self, logid: int, first_line: int, *, chunks: int, conn: AsyncConnection | None = None
    ) -> tuple[str, int]:
        """The text of up to ``chunks`` stored chunks from the one holding ``first_line`` on,
        starting at that line; returns (the lines, each ending with a newline; the line after
        them). The way to read a whole log a few chunks at a time."""
        stmt = (
            sa.select(_lc.c.first_line, _lc.c.last_line, _lc.c.content, _lc.c.compressed)
            .where(_lc.c.logid == logid, _lc.c.last_line >= first_line)
            .order_by(_lc.c.first_line)
            .limit(chunks)
        )
        out: list[str] = []
        following = first_line
        async with self._read(conn) as c:
            for row in await c.execute(stmt):
                text = _decompress(bytes(row.content), row.compressed).decode("utf-8", "replace")
                if row.first_line < first_line:
                    text = "\n".join(text.split("\n")[first_line - row.first_line :])
                out.append(text)
                out.append("\n")
                following = row.last_line + 1
        return "".join(out), following

    async def finish_log(self, logid: int, *, conn: AsyncConnection | None = None) -> None:
        async with self._write(conn) as c:
            await _FINISH.execute(c, {"logid": logid})

    async def compress_log(
        self,
        logid: int,
        method: str | int = "gz",
        *,
        force: bool = False,
        conn: AsyncConnection | None = None,
    ) -> int:
        """Merge runs of adjacent raw chunks (within the row limits) into chunks compressed
        with ``method`` (raw: nothing to do); returns the bytes saved. Chunks already
        compressed (as big appends are) stay as they are, unless ``force``: then each chunk
        compressed another way is compressed again with ``method`` (kept raw if that does not
        shrink it). Groups that would not shrink are left alone.

        Each group is rewritten in its own transaction (unless ``conn`` is given), so readers
        never see lines missing.
        """
        packing = method if isinstance(method, int) else compression.method_id(method)
        if packing == RAW:
            return 0
        async with self._read(conn) as c:
            sizes = (await _CHUNK_SIZES.execute(c, {"logid": logid})).all()
        # runs of raw chunks to merge: [first_line, last_line, bytes]; None after a packed one
        groups: list[list[int]] = []
        again: list[tuple[int, int]] = []  # (first, last) of chunks to compress again
        current: list[int] | None = None
        for row in sizes:
            if row.compressed != RAW:
                current = None
                if force and row.compressed != packing:
                    again.append((row.first_line, row.last_line))
            elif (
                current is not None
                and current[2] + 1 + row.size < MAX_CHUNK_BYTES
                and row.last_line - current[0] < MAX_CHUNK_LINES
            ):
                current[1] = row.last_line
                current[2] += 1 + row.size
            else:
                current = [row.first_line, row.last_line, row.size]
                groups.append(current)
        saved = 0
        for first, last, _size in groups:
            saved += await self._compress_group(logid, first, last, packing, conn)
        for first, last in again:
            saved += await self._compress_group(logid, first, last, packing, conn, again=True)
        return saved

    async def _compress_group(
        self,
        logid: int,
        first: int,
        last: int,
        packing: int,
        conn: AsyncConnection | None,
        *,
        again: bool = False,
    ) -> int:
        in_range = {"logid": logid, "first": first, "last": last}
        async with self._write(conn) as c:
            rows = (await _CHUNKS_IN_RANGE.execute(c, in_range)).all()
            old_size = sum(len(r.content) for r in rows)
            raw = b"\n".join(_decompress(bytes(r.content), r.compressed) for r in rows)
            packed = compression.pack(raw, packing)
            if again:
                # a chunk compressed another way: the new method, or raw if it gains nothing
                if len(packed) >= len(raw) or len(packed) > MAX_CHUNK_BYTES:
                    packed, packing = raw, RAW
            elif len(packed) >= old_size or len(packed) > MAX_CHUNK_BYTES:
                return 0
            await _DELETE_RANGE.execute(c, in_range)
            await _ADD_CHUNK.execute(
                c,
                {
                    "logid": logid,
                    "first_line": first,
                    "last_line": last,
                    "content": packed,
                    "compressed": packing,
                },
            )
        return old_size - len(packed)

    async def log_ids(
        self, *, after: int = 0, limit: int = 1000, conn: AsyncConnection | None = None
    ) -> list[int]:
        """The ids of logs, in order, after ``after``: ``limit`` at most (a page of them)."""
        stmt = sa.select(_l.c.id).where(_l.c.id > after).order_by(_l.c.id).limit(limit)
        async with self._read(conn) as c:
            return list((await c.execute(stmt)).scalars())

    async def count_logs(self, *, conn: AsyncConnection | None = None) -> int:
        async with self._read(conn) as c:
            stmt = sa.select(sa.func.count()).select_from(_l)
            return int((await c.execute(stmt)).scalar_one())

    async def delete_old_logs(
        self, older_than: int, *, batch: int = 100, conn: AsyncConnection | None = None
    ) -> int:
        """Drop the lines of logs whose step started before ``older_than`` (the logs stay,
        with type "d"), and any lines still kept for logs already of type "d"; returns how
        many chunks were deleted.

        ``batch`` logs at a time, each batch in its own transaction (unless ``conn`` is
        given): marking a log deleted and removing its chunks happen together, so a log is
        never left half gone, and several masters doing it at once only find less to do."""
        # the logs not yet deleted, in id order through the partial index logs_kept (which
        # holds only those: the literal 'd' lets both planners match its predicate), each with
        # its step by primary key; not every step older than the horizon (the whole history)
        # through steps_started_at
        kept = _l.c.type != sa.literal(LogType.DELETED.value, literal_execute=True)
        pick = (
            sa.select(_l.c.id)
            .join(t.steps, t.steps.c.id == _l.c.stepid)
            .where(kept, t.steps.c.started_at < older_than)
            .order_by(_l.c.id)
            .limit(batch)
        )
        total = 0
        # each batch goes on after the last log of the one before (ids ascending), so a run
        # reads the logs once rather than once per batch from the start
        after = 0
        while True:
            async with self._write(conn) as c:
                ids = list((await c.execute(pick.where(_l.c.id > after))).scalars())
                if ids:
                    after = ids[-1]
                    await c.execute(
                        _l.update().where(_l.c.id.in_(ids)).values(type=LogType.DELETED.value)
                    )
                    gone = await c.execute(_lc.delete().where(_lc.c.logid.in_(ids)))
                    total += int(gone.rowcount)
            if len(ids) < batch:
                break
        # logs already marked deleted whose chunks stayed (left by another program, e.g. in an
        # adopted Buildbot database, or by an interrupted run of it): their chunks go too
        # read from the chunks (which only kept logs, and these, have) to their log by key, not
        # from every log marked deleted (the history)
        leftovers = (
            sa.select(_lc.c.logid)
            .distinct()
            .join(_l, _l.c.id == _lc.c.logid)
            .where(_l.c.type == LogType.DELETED.value)
            .order_by(_lc.c.logid)
            .limit(batch)
        )
        after = 0
        while True:
            async with self._write(conn) as c:
                ids = list((await c.execute(leftovers.where(_lc.c.logid > after))).scalars())
                if ids:
                    after = ids[-1]
                    gone = await c.execute(_lc.delete().where(_lc.c.logid.in_(ids)))
                    total += int(gone.rowcount)
            if len(ids) < batch:
                return total

"""The logs connector: step logs and their lines, stored in chunks.

Lines are appended whole (each ends with ``\\n``) and stored in ``logchunks`` rows covering
``first_line..last_line`` (0-based, inclusive): the lines joined with ``\\n`` without the final
one, at most :data:`MAX_CHUNK_LINES` lines and :data:`MAX_CHUNK_BYTES` bytes per row. A line too
long for a row of its own is cut to 65535 bytes (at a character boundary). Stdio logs keep each
line's one-character stream prefix exactly as the caller gave it.

Chunks are written raw (``compressed = 0``); :meth:`LogsRepository.compress_log` later merges
small chunks and stores them compressed with the chosen method (:mod:`.compression`: gz, bz2,
lz4, zstd, with Buildbot's ids and formats). Buildbot's brotli chunks are refused with a DbError.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import compression
from buildyard.master.db import schema as t
from buildyard.master.db.base import Repository, inserted_id
from buildyard.master.db.errors import LogSlugExists
from buildyard.master.model.logs import Log, LogType

MAX_CHUNK_BYTES = 65536
MAX_CHUNK_LINES = 1000
MAX_SLUG_LENGTH = 50
RAW = compression.RAW

_l, _lc = t.logs, t.logchunks


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

    Lines go into the current chunk while it stays within both limits (counting each line's
    newline); a line that does not fit in a chunk of its own gets one, truncated if needed.
    """
    if not content.endswith("\n"):
        raise ValueError("log content must be whole lines, ending with a newline")
    lines: list[bytes] = []
    size = 0
    for text in content[:-1].split("\n"):
        line = text.encode("utf-8") + b"\n"
        if lines and (size + len(line) > MAX_CHUNK_BYTES or len(lines) == MAX_CHUNK_LINES):
            yield b"".join(lines)[:-1], len(lines)
            lines, size = [], 0
        if len(line) > MAX_CHUNK_BYTES:
            stored = line[:-1]
            yield (_truncate(stored) if len(stored) > MAX_CHUNK_BYTES else stored), 1
        else:
            lines.append(line)
            size += len(line)
    if lines:
        yield b"".join(lines)[:-1], len(lines)


def _decompress(content: bytes, compressed: int) -> bytes:
    return compression.unpack(content, compressed)


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
                result = await c.execute(
                    _l.insert().values(
                        name=name,
                        slug=slug,
                        stepid=stepid,
                        complete=0,
                        num_lines=0,
                        type=kind.value,
                    )
                )
                return inserted_id(result)
        except sa.exc.IntegrityError as exc:
            raise LogSlugExists(f"step {stepid} already has a log with slug {slug!r}") from exc

    async def get_log(self, logid: int, *, conn: AsyncConnection | None = None) -> Log | None:
        async with self._read(conn) as c:
            row = (await c.execute(sa.select(_l).where(_l.c.id == logid))).first()
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
        self, logid: int, content: str, *, conn: AsyncConnection | None = None
    ) -> tuple[int, int] | None:
        """Append whole lines; returns the (first, last) line numbers they got, or None if
        there is no such log. Concurrent appends to one log are serialized."""
        chunks = list(chunk_lines(content))
        async with self._write(conn) as c:
            num_lines = (
                await c.execute(sa.select(_l.c.num_lines).where(_l.c.id == logid).with_for_update())
            ).scalar()
            if num_lines is None:
                return None
            rows = []
            line = num_lines
            for stored, count in chunks:
                rows.append(
                    {
                        "logid": logid,
                        "first_line": line,
                        "last_line": line + count - 1,
                        "content": stored,
                        "compressed": RAW,
                    }
                )
                line += count
            await c.execute(_lc.insert(), rows)
            await c.execute(_l.update().where(_l.c.id == logid).values(num_lines=line))
        return num_lines, line - 1

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

    async def finish_log(self, logid: int, *, conn: AsyncConnection | None = None) -> None:
        async with self._write(conn) as c:
            await c.execute(_l.update().where(_l.c.id == logid).values(complete=1))

    async def compress_log(
        self, logid: int, method: str = "gz", *, conn: AsyncConnection | None = None
    ) -> int:
        """Merge runs of adjacent chunks (within the row limits) into chunks compressed with
        ``method`` (raw: nothing to do); returns the bytes saved. Groups that would not shrink,
        or not fit, are left alone.

        Each group is rewritten in its own transaction (unless ``conn`` is given), so readers
        never see lines missing.
        """
        async with self._read(conn) as c:
            sizes = list(
                await c.execute(
                    sa.select(
                        _lc.c.first_line,
                        _lc.c.last_line,
                        _lc.c.compressed,
                        sa.func.length(_lc.c.content).label("size"),
                    )
                    .where(_lc.c.logid == logid)
                    .order_by(_lc.c.first_line)
                )
            )
        # runs of chunks to merge: [first_line, last_line, stored bytes, chunks, all compressed]
        groups: list[list[int]] = []
        for row in sizes:
            group = groups[-1] if groups else None
            if (
                group is not None
                and group[2] + row.size <= MAX_CHUNK_BYTES
                and row.last_line - group[0] < MAX_CHUNK_LINES
            ):
                group[1] = row.last_line
                group[2] += row.size
                group[3] += 1
                group[4] = int(group[4] and row.compressed != RAW)
            else:
                groups.append(
                    [row.first_line, row.last_line, row.size, 1, int(row.compressed != RAW)]
                )
        packing = compression.method_id(method)
        if packing == RAW:
            return 0
        saved = 0
        for first, last, _size, count, all_compressed in groups:
            if count == 1 and all_compressed:
                continue
            saved += await self._compress_group(logid, first, last, packing, conn)
        return saved

    async def _compress_group(
        self, logid: int, first: int, last: int, packing: int, conn: AsyncConnection | None
    ) -> int:
        in_range = sa.and_(_lc.c.logid == logid, _lc.c.first_line >= first, _lc.c.last_line <= last)
        async with self._write(conn) as c:
            rows = list(
                await c.execute(
                    sa.select(_lc.c.content, _lc.c.compressed)
                    .where(in_range)
                    .order_by(_lc.c.first_line)
                )
            )
            old_size = sum(len(r.content) for r in rows)
            raw = b"\n".join(_decompress(bytes(r.content), r.compressed) for r in rows)
            packed = compression.pack(raw, packing)
            if len(packed) >= old_size or len(packed) > MAX_CHUNK_BYTES:
                return 0
            await c.execute(_lc.delete().where(in_range))
            await c.execute(
                _lc.insert().values(
                    logid=logid,
                    first_line=first,
                    last_line=last,
                    content=packed,
                    compressed=packing,
                )
            )
        return old_size - len(packed)

    async def delete_old_logs(self, older_than: int, *, conn: AsyncConnection | None = None) -> int:
        """Drop the lines of logs whose step started before ``older_than`` (the logs stay,
        with type "d"); returns how many chunks were deleted."""
        old_steps = sa.select(t.steps.c.id).where(t.steps.c.started_at < older_than)
        deleted_logs = sa.select(_l.c.id).where(_l.c.type == LogType.DELETED.value)
        async with self._write(conn) as c:
            await c.execute(
                _l.update()
                .where(_l.c.stepid.in_(old_steps), _l.c.type != LogType.DELETED.value)
                .values(type=LogType.DELETED.value)
            )
            gone = await c.execute(_lc.delete().where(_lc.c.logid.in_(deleted_logs)))
        return int(gone.rowcount)

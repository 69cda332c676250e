"""The logs connector on both backends: chunk boundaries, line reads, compression."""

from __future__ import annotations

import asyncio
import random
import string
import zlib

import pytest
import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import DbError, LogSlugExists
from buildyard.master.db.logs import LogsRepository, chunk_lines
from buildyard.master.model.logs import LogType
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows


def _repo(database: Database, clock: FakeClock) -> LogsRepository:
    return LogsRepository(engine=database.engine, clock=clock)


async def _log(database: Database, clock: FakeClock, type: str = "s") -> int:
    _builderid, _buildid, stepid = await _rows.add_running_step(database)
    return await _repo(database, clock).add_log(stepid, "stdio", "stdio", type)


async def _span(repo: LogsRepository, logid: int, content: str) -> tuple[int, int]:
    """The (first, last) line numbers an append got, from the log's line count after it."""
    appended = await repo.append_log(logid, content)
    assert appended is not None
    lg, count = appended
    assert count == content.count("\n")
    return lg.num_lines - count, lg.num_lines - 1


async def _chunks(database: Database, logid: int) -> list[tuple[int, int, bytes, int]]:
    lc = t.logchunks
    async with database.reading() as c:
        rows = await c.execute(
            sa.select(lc.c.first_line, lc.c.last_line, lc.c.content, lc.c.compressed)
            .where(lc.c.logid == logid)
            .order_by(lc.c.first_line)
        )
        return [(r.first_line, r.last_line, bytes(r.content), r.compressed) for r in rows]


async def test_add_and_get_logs(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    _builderid, _buildid, stepid = await _rows.add_running_step(database)
    a = await repo.add_log(stepid, "stdio", "stdio", "s")
    b = await repo.add_log(stepid, "Build Report", "build_report", LogType.HTML)
    log = await repo.get_log(a)
    assert log is not None
    assert (log.id, log.name, log.slug, log.stepid, log.complete, log.num_lines, log.type) == (
        a,
        "stdio",
        "stdio",
        stepid,
        False,
        0,
        LogType.STDIO,
    )
    by_slug = await repo.get_log_by_slug(stepid, "build_report")
    assert by_slug is not None and (by_slug.id, by_slug.type) == (b, LogType.HTML)
    assert await repo.get_log_by_slug(stepid, "nope") is None
    assert [x.id for x in await repo.get_logs(stepid)] == [a, b]
    await repo.finish_log(a)
    done = await repo.get_log(a)
    assert done is not None and done.complete
    assert await repo.get_log(9999) is None


async def test_duplicate_slug_is_a_clear_error(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    _builderid, _buildid, stepid = await _rows.add_running_step(database)
    await repo.add_log(stepid, "stdio", "stdio", "s")
    with pytest.raises(LogSlugExists, match="stdio"):
        await repo.add_log(stepid, "other name", "stdio", "t")
    with pytest.raises(ValueError, match="'x'"):
        await repo.add_log(stepid, "n", "n", "x")
    with pytest.raises(ValueError, match="longer than 50"):
        await repo.add_log(stepid, "n", "s" * 51, "t")


async def test_append_and_read_lines(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    logid = await _log(database, clock)
    assert await _span(repo, logid, "hline one\nostdout\n") == (0, 1)
    assert await _span(repo, logid, "eerr\n\n") == (2, 3)
    # stream prefixes are kept as given; an empty line is a line
    assert await repo.get_log_lines(logid, 0, 3) == "hline one\nostdout\neerr\n\n"
    assert await repo.get_log_lines(logid, 1, 2) == "ostdout\neerr\n"
    assert await repo.get_log_lines(logid, 3, 100) == "\n"
    assert await repo.get_log_lines(logid, 2, 1) == ""
    log = await repo.get_log(logid)
    assert log is not None and log.num_lines == 4
    assert await _chunks(database, logid) == [
        (0, 1, b"hline one\nostdout", 0),
        (2, 3, b"eerr\n", 0),
    ]


async def test_append_needs_whole_lines_and_a_log(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    logid = await _log(database, clock)
    with pytest.raises(ValueError, match="newline"):
        await repo.append_log(logid, "partial")
    with pytest.raises(ValueError, match="newline"):
        await repo.append_log(logid, "")
    assert await repo.append_log(9999, "x\n") is None


async def test_chunks_hold_at_most_1000_lines(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    logid = await _log(database, clock, "t")
    content = "".join(f"line {i}\n" for i in range(2500))
    assert await _span(repo, logid, content) == (0, 2499)
    chunks = await _chunks(database, logid)
    assert [(first, last) for first, last, _, _ in chunks] == [(0, 999), (1000, 1999), (2000, 2499)]
    assert chunks[1][2] == "\n".join(f"line {i}" for i in range(1000, 2000)).encode()
    assert (
        await repo.get_log_lines(logid, 998, 1001) == "line 998\nline 999\nline 1000\nline 1001\n"
    )
    assert await repo.get_log_lines(logid, 0, 2499) == content


async def test_chunks_hold_at_most_64k_bytes(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    logid = await _log(database, clock, "t")
    # 100-byte lines (99 + newline): 655 fit in 65536 bytes, the 656th does not
    lines = [f"{i:04d}" + "x" * 95 + "\n" for i in range(700)]
    assert await _span(repo, logid, "".join(lines)) == (0, 699)
    chunks = await _chunks(database, logid)
    assert [(first, last) for first, last, _, _ in chunks] == [(0, 654), (655, 699)]
    assert len(chunks[0][2]) == 655 * 100 - 1
    assert all(len(content) <= 65536 for _, _, content, _ in chunks)
    assert await repo.get_log_lines(logid, 654, 655) == lines[654] + lines[655]


async def test_overlong_line_gets_own_truncated_chunk(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    logid = await _log(database, clock, "t")
    # a 3-byte character straddles the cut at 65535 bytes: it goes entirely
    long = "a" * 65533 + "€" + "b" * 10
    assert await _span(repo, logid, f"before\n{long}\nafter\n") == (0, 2)
    chunks = await _chunks(database, logid)
    assert [(first, last) for first, last, _, _ in chunks] == [(0, 0), (1, 1), (2, 2)]
    assert chunks[1][2] == b"a" * 65533
    exactly = "c" * 65535
    assert await _span(repo, logid, exactly + "\n") == (3, 3)
    assert (await _chunks(database, logid))[3][2] == exactly.encode()
    assert await repo.get_log_lines(logid, 1, 3) == "a" * 65533 + "\nafter\n" + exactly + "\n"
    log = await repo.get_log(logid)
    assert log is not None and log.num_lines == 4


def test_chunk_lines_limits() -> None:
    assert list(chunk_lines("a\n")) == [(b"a", 1)]
    assert list(chunk_lines("\n\n")) == [(b"\n", 2)]
    # exactly 65536 bytes with newlines fit one chunk; one more byte does not
    fit = ["x" * 65535 + "\n"]
    assert [n for _, n in chunk_lines("".join(fit))] == [1]
    two = ["x" * 32767 + "\n", "y" * 32767 + "\n"]
    assert [n for _, n in chunk_lines("".join(two))] == [2]
    over = ["x" * 32767 + "\n", "y" * 32768 + "\n"]
    assert [n for _, n in chunk_lines("".join(over))] == [1, 1]
    assert [n for _, n in chunk_lines("z\n" * 1001)] == [1000, 1]


async def test_concurrent_appends_do_not_overlap(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    logid = await _log(database, clock)
    spans = await asyncio.gather(*(_span(repo, logid, f"o{i}\no{i}\n") for i in range(6)))
    assert sorted(spans) == [(i, i + 1) for i in range(0, 12, 2)]
    text = await repo.get_log_lines(logid, 0, 11)
    lines = text.splitlines()
    assert len(lines) == 12 and all(lines[i] == lines[i + 1] for i in range(0, 12, 2))


async def test_reads_gzip_chunks_and_compresses(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    logid = await _log(database, clock, "t")
    content = "".join(f"compile unit {i} ok\n" for i in range(50))
    for i in range(0, 50, 5):
        await repo.append_log(logid, "".join(content.splitlines(True)[i : i + 5]))
    assert len(await _chunks(database, logid)) == 10
    saved = await repo.compress_log(logid)
    chunks = await _chunks(database, logid)
    assert [(first, last, compressed) for first, last, _, compressed in chunks] == [(0, 49, 1)]
    assert zlib.decompress(chunks[0][2]) == content[:-1].encode()
    assert saved == len(content) - 10 - len(chunks[0][2])
    assert await repo.get_log_lines(logid, 0, 49) == content
    assert await repo.get_log_lines(logid, 10, 11) == "compile unit 10 ok\ncompile unit 11 ok\n"
    # nothing left to gain
    assert await repo.compress_log(logid) == 0
    await repo.append_log(logid, "more\n")
    assert await repo.get_log_lines(logid, 49, 50) == "compile unit 49 ok\nmore\n"


async def test_unsupported_compression_is_a_clear_error(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    logid = await _log(database, clock, "t")
    async with database.transaction() as c:
        await c.execute(
            t.logchunks.insert().values(
                logid=logid, first_line=0, last_line=0, content=b"?", compressed=9
            )
        )
    with pytest.raises(DbError, match="compression 9 is unknown"):
        await repo.get_log_lines(logid, 0, 0)


async def test_delete_old_logs(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    _builderid, buildid, old_step = await _rows.add_running_step(database)
    new_step = await _rows.add_step(database, buildid, number=1, started_at=500)
    old = await repo.add_log(old_step, "old", "old", "s")  # the step started at 0
    new = await repo.add_log(new_step, "new", "new", "s")
    await repo.append_log(old, "oa\n" * 1500)
    await repo.append_log(new, "ob\n")
    assert await repo.delete_old_logs(100, batch=1) == 2
    old_log, new_log = await repo.get_log(old), await repo.get_log(new)
    assert old_log is not None and old_log.type == LogType.DELETED
    assert new_log is not None and new_log.type == LogType.STDIO
    assert await repo.get_log_lines(old, 0, 10) == ""
    assert await repo.get_log_lines(new, 0, 0) == "ob\n"
    assert await repo.delete_old_logs(100) == 0


async def test_delete_old_logs_removes_the_lines_left_with_deleted_logs(
    database: Database, clock: FakeClock
) -> None:
    # as an adopted Buildbot database may have: logs of type "d" that still have chunks
    repo = _repo(database, clock)
    _builderid, buildid, _old_step = await _rows.add_running_step(database)
    new_step = await _rows.add_step(database, buildid, number=1, started_at=500)
    kept = await repo.add_log(new_step, "kept", "kept", "s")
    await repo.append_log(kept, "keep\n")
    leftovers = []
    for i in range(3):
        logid = await repo.add_log(new_step, f"gone{i}", f"gone{i}", "s")
        await repo.append_log(logid, "stale\n" * 3)
        leftovers.append(logid)
    async with database.transaction() as c:
        await c.execute(
            t.logs.update().where(t.logs.c.id.in_(leftovers)).values(type=LogType.DELETED.value)
        )
    assert await repo.delete_old_logs(100, batch=2) == 3
    for logid in leftovers:
        assert await _chunks(database, logid) == []
    assert await repo.get_log_lines(kept, 0, 0) == "keep\n"
    assert await repo.delete_old_logs(100) == 0


async def test_two_masters_deleting_old_logs_at_once_agree(
    database: Database, clock: FakeClock, db_url: str
) -> None:
    repo = _repo(database, clock)
    _builderid, _buildid, step = await _rows.add_running_step(database)  # started at 0
    logids = [await repo.add_log(step, f"l{i}", f"l{i}", "s") for i in range(7)]
    for logid in logids:
        await repo.append_log(logid, "x\n" * 10)
    other = Database(db_url, clock=clock)  # a second master's connections
    try:
        counts = await asyncio.gather(
            repo.delete_old_logs(100, batch=2),
            LogsRepository(engine=other.engine, clock=clock).delete_old_logs(100, batch=2),
        )
    finally:
        await other.close()
    # each chunk was deleted once, by one of them, and every log is marked deleted
    assert sum(counts) == len(logids)
    for logid in logids:
        log = await repo.get_log(logid)
        assert log is not None and log.type == LogType.DELETED
    async with database.reading() as c:
        assert (await c.execute(sa.select(sa.func.count()).select_from(t.logchunks))).scalar() == 0


@pytest.mark.parametrize(
    ("method", "code"), [("gz", 1), ("bz2", 2), ("lz4", 3), ("zstd", 4), ("br", 5)]
)
async def test_each_compression_method_round_trips(
    database: Database, clock: FakeClock, method: str, code: int
) -> None:
    repo = _repo(database, clock)
    logid = await _log(database, clock, "t")
    text = "".join(f"ocompile unit {i} ok \u00e9\n" for i in range(300))
    await repo.append_log(logid, text)
    assert await repo.compress_log(logid, method) > 0
    chunks = await _chunks(database, logid)
    assert {compressed for *_, compressed in chunks} == {code}
    assert await repo.get_log_lines(logid, 0, 299) == text
    assert await repo.get_log_lines(logid, 120, 121) == "".join(text.splitlines(True)[120:122])


async def test_raw_compression_leaves_the_chunks(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    logid = await _log(database, clock, "t")
    await repo.append_log(logid, "a\n" * 50)
    before = await _chunks(database, logid)
    assert await repo.compress_log(logid, "raw") == 0
    assert await _chunks(database, logid) == before


def _chunk_lines_line_by_line(content: str) -> list[tuple[bytes, int]]:
    """The chunking rule spelled out one line at a time, to check the fast version against."""
    chunks: list[tuple[bytes, int]] = []
    lines: list[bytes] = []
    for text in content[:-1].split("\n"):
        line = text.encode("utf-8") + b"\n"
        size = sum(len(x) for x in lines)
        if lines and (size + len(line) > 65536 or len(lines) == 1000):
            chunks.append((b"".join(lines)[:-1], len(lines)))
            lines = []
        if len(line) > 65536:
            whole = line[:-1]
            cut = whole[:65535].decode("utf-8", "ignore").encode() if len(whole) > 65536 else whole
            chunks.append((cut, 1))
        else:
            lines.append(line)
    if lines:
        chunks.append((b"".join(lines)[:-1], len(lines)))
    return chunks


def test_chunk_lines_matches_the_line_by_line_rule() -> None:
    rng = random.Random(7)
    for _ in range(300):
        lines = []
        for _ in range(rng.choice([1, 3, 40, 1200, 2100])):
            size = rng.choice([0, 1, 9, 99, 999, 30000, 65535, 65536, 65537, 70000])
            size = max(0, size + rng.choice([-1, 0, 0, 1]))
            char = rng.choice(["a", "\u00e9", "\u20ac"])
            lines.append(char * (size // len(char.encode())) + "\n")
        content = "".join(lines)
        assert list(chunk_lines(content)) == _chunk_lines_line_by_line(content)


async def test_big_appends_are_stored_compressed_at_once(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    logid = await _log(database, clock)
    # 2000 lines of 100 bytes: 4 chunks of 64 KB or less, all worth compressing
    big = "".join(f"o{i:06d} " + "y" * 91 + "\n" for i in range(2000))
    await repo.append_log(logid, big, compression="gz")
    # two small appends: raw until compress_log merges them
    await repo.append_log(logid, "osmall one\n", compression="gz")
    await repo.append_log(logid, "osmall two\n", compression="gz")
    chunks = await _chunks(database, logid)
    assert [(first, last, packing) for first, last, _, packing in chunks] == [
        (0, 654, 1),
        (655, 1309, 1),
        (1310, 1964, 1),
        (1965, 1999, 0),  # 3.5 KB: below the size worth compressing
        (2000, 2000, 0),
        (2001, 2001, 0),
    ]
    assert zlib.decompress(chunks[1][2]).startswith(b"o000655 ")
    assert await repo.get_log_lines(logid, 1963, 2001) == (
        "".join(big.splitlines(True)[1963:]) + "osmall one\nosmall two\n"
    )
    # compress_log merges the run of raw chunks, and leaves the packed ones
    assert await repo.compress_log(logid, "gz") > 0
    after = await _chunks(database, logid)
    assert [(first, last, packing) for first, last, _, packing in after] == [
        (0, 654, 1),
        (655, 1309, 1),
        (1310, 1964, 1),
        (1965, 2001, 1),
    ]
    assert after[:3] == chunks[:3]
    assert await repo.get_log_lines(logid, 0, 2001) == big + "osmall one\nosmall two\n"
    # a zlib stream's second byte names its level: the live appends were packed at the fastest
    # (1), the merge at the end at the default (6), as Buildbot's reader takes any
    assert {chunk[2][:2] for chunk in after[:3]} == {b"\x78\x01"}
    assert after[3][2][:2] == b"\x78\x9c"


async def test_an_append_that_would_not_shrink_stays_raw(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    logid = await _log(database, clock, "t")
    # random letters have no repeats for lz4 to find (it does no entropy coding): packed is bigger
    rng = random.Random(3)
    noise = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(20000))
    await repo.append_log(logid, noise + "\n", compression="lz4")
    ((first, last, content, packing),) = await _chunks(database, logid)
    assert (first, last, packing) == (0, 0, 0) and content == noise.encode()


async def test_reading_a_log_a_few_chunks_at_a_time(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    logid = await _log(database, clock, "t")
    lines = [f"line {i}\n" for i in range(2500)]  # stored: 1000, 1000, 400, then 100 lines
    await repo.append_log(logid, "".join(lines[:2400]), compression="gz")
    await repo.append_log(logid, "".join(lines[2400:]))  # a raw chunk after packed ones
    text, after = await repo.get_log_text_from(logid, 0, chunks=2)
    assert (text, after) == ("".join(lines[:2000]), 2000)
    text, after = await repo.get_log_text_from(logid, after, chunks=2)
    assert (text, after) == ("".join(lines[2000:]), 2500)
    # from the middle of a chunk
    text, after = await repo.get_log_text_from(logid, 1500, chunks=1)
    assert (text, after) == ("".join(lines[1500:2000]), 2000)
    assert await repo.get_log_text_from(logid, 2500, chunks=5) == ("", 2500)


@pytest.mark.parametrize(
    "content",
    [
        "oline\n" * 40,  # one small chunk: stored compressed with the append, not read back
        "o" + "x" * 9000 + "\n",  # one chunk big enough to be packed live as it is appended
        "".join(f"oline {i}\n" for i in range(1500)),  # two chunks: compress_log merges them
        "oa\n",  # too small to shrink: stays raw
    ],
)
async def test_last_lines_appended_with_the_close_store_what_compress_log_would(
    database: Database, clock: FakeClock, content: str
) -> None:
    """``append_log(last=True)`` (the lines a log ends with, appended, compressed and closed
    in one transaction) leaves the rows of an append, then ``compress_log`` and
    ``finish_log``: whichever way it gets there."""
    repo = _repo(database, clock)
    _builderid, _buildid, stepid = await _rows.add_running_step(database)
    one_by_one = await repo.add_log(stepid, "one", "one", "s")
    assert await repo.append_log(one_by_one, content, compression="gz") is not None
    await repo.compress_log(one_by_one, "gz")
    await repo.finish_log(one_by_one)
    together = await repo.add_log(stepid, "together", "together", "s")
    appended = await repo.append_log(together, content, compression="gz", last=True)
    assert appended is not None
    lg, count = appended
    assert (lg.num_lines, count) == (content.count("\n"), content.count("\n"))
    assert await _chunks(database, together) == await _chunks(database, one_by_one)
    closed = await repo.get_log(together)
    assert closed is not None and closed.complete
    lines = await repo.get_log_lines(together, 0, lg.num_lines - 1)
    assert lines == content

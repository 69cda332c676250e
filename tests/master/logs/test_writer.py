"""LogWriter against a real database: lines whole and in order, stream letters, size limits,
observers, redaction, compression, and the events a follower sees."""

from __future__ import annotations

import sqlalchemy as sa

from buildyard.master.data.updates import Updates
from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database
from buildyard.master.logs.writer import LogLimits, LogWriter
from buildyard.master.model.logs import LogType
from buildyard.master.mq.local import LocalMQ
from buildyard.master.secrets.redaction import Redactor
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows


async def _writer(
    database: Database, clock: FakeClock, kind: LogType = LogType.STDIO, **limits: object
) -> tuple[LogWriter, Updates, LocalMQ]:
    mq = LocalMQ()
    updates = Updates(db=database, mq=mq, clock=clock)
    _builderid, _buildid, stepid = await _rows.add_running_step(database)
    logid = await updates.add_log(stepid, "stdio", kind)
    writer = LogWriter(
        updates,
        logid=logid,
        name="stdio",
        type=kind,
        limits=LogLimits(**limits),  # type: ignore[arg-type]
    )
    return writer, updates, mq


async def _text(database: Database, logid: int) -> str:
    log = await database.logs.get_log(logid)
    assert log is not None
    return await database.logs.get_log_lines(logid, 0, log.num_lines - 1)


async def test_pieces_become_whole_lines_with_their_stream(
    database: Database, clock: FakeClock
) -> None:
    writer, _updates, mq = await _writer(database, clock)
    seen: list[tuple[str, str]] = []
    writer.add_observer(lambda stream, line: seen.append((stream, line)))
    appends = mq.subscribe(("logs", None, "append"))
    writer.add_header("running\n")
    writer.add_stdout("hel")
    writer.add_stderr("oops\nhalf")
    writer.add_stdout("lo\nworld\n")
    await writer.flush()
    assert (await appends.get())[1]["num_lines"] >= 1  # a follower sees lines as they come
    writer.add_stdout("no newline at the end")
    await writer.finish()
    assert await _text(database, writer.logid) == (
        "hrunning\neoops\nohello\noworld\nehalf\nono newline at the end\n"
    )
    assert ("stdout", "hello") in seen
    assert ("stderr", "half") in seen
    log = await database.logs.get_log(writer.logid)
    assert log is not None
    assert log.complete


async def test_bytes_are_decoded_with_the_log_encoding(
    database: Database, clock: FakeClock
) -> None:
    writer, _u, _mq = await _writer(database, clock, encoding="latin-1")
    writer.add_stdout("caf\u00e9 ".encode("latin-1"))
    writer.add_stdout(b"ok\n")
    await writer.finish()
    assert await _text(database, writer.logid) == "ocaf\u00e9 ok\n"


async def test_utf8_bytes_cut_in_a_character_and_bad_bytes(
    database: Database, clock: FakeClock
) -> None:
    # utf-8 (the default): a character cut between two pieces is whole; a bad byte is U+FFFD
    utf8, _u, _mq = await _writer(database, clock)
    euro = "\u20ac".encode()
    utf8.add_stdout(b"a" + euro[:2])
    utf8.add_stderr(b"\xffbad\n")
    utf8.add_stdout(euro[2:] + b"b\n")
    utf8.add_stdout(euro[:1])  # cut at the end: replaced when the log finishes
    await utf8.finish()
    assert await _text(database, utf8.logid) == "e\ufffdbad\noa\u20acb\no\ufffd\n"


async def test_max_size_keeps_the_start_and_the_tail(database: Database, clock: FakeClock) -> None:
    writer, _u, _mq = await _writer(database, clock, max_size=40, max_tail_size=12)
    for i in range(20):
        writer.add_stdout(f"line {i:02}\n")  # 9 characters each with its letter
    await writer.finish()
    lines = (await _text(database, writer.logid)).splitlines()
    assert lines[:4] == ["oline 00", "oline 01", "oline 02", "oline 03"]
    assert lines[4].startswith("hlog size limit of 40 characters reached: ")
    assert lines[5:] == ["oline 19"]  # what fits in the 12-character tail


async def test_secrets_are_redacted_before_they_are_stored(
    database: Database, clock: FakeClock
) -> None:
    mq = LocalMQ()
    updates = Updates(db=database, mq=mq, clock=clock)
    _b, _build, stepid = await _rows.add_running_step(database)
    logid = await updates.add_log(stepid, "stdio", LogType.STDIO)
    redactor = Redactor(cut_length=20)
    redactor.add("hunter2", "password")
    redactor.add("-----BEGIN KEY-----\nabc\n-----END KEY-----", "key")
    writer = LogWriter(updates, logid=logid, name="stdio", type=LogType.STDIO, redactor=redactor)
    seen: list[tuple[str, str]] = []
    writer.add_observer(lambda stream, line: seen.append((stream, line)))
    writer.add_stdout("the password is hunter2\n")
    writer.add_stdout("split across writes: hun")
    writer.add_stdout("ter2 and ")
    await writer.flush()  # a flush while the secret is half there stores none of it
    assert "hun" not in await _text(database, logid)
    writer.add_stdout("hunter2\n")
    writer.add_stderr("-----BEGIN KEY-----\n")
    await writer.flush()
    assert "BEGIN" not in await _text(database, logid)  # a multi-line secret's first line waits
    writer.add_stderr("abc\n-----END KEY----- done\n")
    # a worker cut this line after 20 characters, in the middle of the secret
    writer.add_stdout("x" * 16 + "hunt\n" + "er2 y\n")
    await writer.finish()
    assert await _text(database, logid) == (
        "othe password is <password>\n"
        "osplit across writes: <password> and <password>\n"
        "e<key> done\n"
        "o" + "x" * 16 + "<password> y\n"
    )
    assert all("hun" not in line and "abc" not in line for _s, line in seen)


async def test_a_finished_log_is_compressed_with_the_configured_method(
    database: Database, clock: FakeClock
) -> None:
    writer, _u, _mq = await _writer(database, clock, compression="bz2", flush_size=100)
    text = "".join(f"compiling unit {i}\n" for i in range(500))
    writer.add_stdout(text)
    await writer.finish()
    async with database.reading() as conn:
        codes = set(
            (
                await conn.execute(
                    sa.select(t.logchunks.c.compressed).where(t.logchunks.c.logid == writer.logid)
                )
            ).scalars()
        )
    assert codes == {2}
    stored = await _text(database, writer.logid)
    assert stored == "".join("o" + line for line in text.splitlines(keepends=True))


async def test_lines_waiting_at_the_finish_are_stored_and_announced_before_it(
    database: Database, clock: FakeClock
) -> None:
    # the last lines go with the close (one transaction): a follower still sees them appended,
    # then the log finished with every line counted, and the text is whole and compressed
    writer, _u, mq = await _writer(database, clock, compression="gz")
    events = mq.subscribe(("logs", None, None))
    writer.add_header("sh -c true\n")
    writer.add_stdout("done")
    await writer.finish()
    (key1, append), (key2, finished) = await events.get(), await events.get()
    assert (key1[-1], append["num_lines"], append["complete"]) == ("append", 2, False)
    assert (key2[-1], finished["num_lines"], finished["complete"]) == ("finished", 2, True)
    assert await _text(database, writer.logid) == "hsh -c true\nodone\n"

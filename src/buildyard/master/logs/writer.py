"""One log of a running step: text in, whole lines out to the database in chunks, observers fed.

A stdio log stores each line behind its stream's letter (``o`` stdout, ``e`` stderr, ``h``
header), as Buildbot does; a text log stores lines as they are. Text may arrive in any pieces:
a line is written once it is complete (or at :meth:`LogWriter.finish`, which completes it).
Lines are appended when ``flush_size`` characters are waiting and at least every
``flush_interval`` seconds while the log is live, so a follower sees output as it comes and a
loud command does not cost a transaction per line.

A finished log is stored compressed with ``c['logCompressionMethod']``.
``c['logMaxSize']`` caps what is stored per log (the lines past it are counted, not stored, and
a header line says so); ``c['logMaxTailSize']`` then keeps the last lines of what was cut.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import dataclasses
from collections.abc import Callable
from typing import Protocol

from buildyard.common.awaitables import deferred_compatible
from buildyard.master.model.logs import LogType
from buildyard.master.secrets.redaction import Redactor, StreamRedactor

STREAM_LETTERS = {"stdout": "o", "stderr": "e", "header": "h"}


class LogAppender(Protocol):
    async def append_log(
        self, logid: int, content: str, *, compression: str = "raw"
    ) -> tuple[int, int] | None: ...

    async def finish_log(self, logid: int, *, compression: str = "raw", last: str = "") -> None: ...


# (stream, line without its newline); stream is "stdout", "stderr", "header" or "" (text logs)
LineObserver = Callable[[str, str], None]


@dataclasses.dataclass(slots=True)
class LogLimits:
    max_size: int | None = None
    max_tail_size: int | None = None
    flush_size: int = 1024 * 1024
    flush_interval: float = 1.0
    # c['logCompressionMethod']: big appends are stored compressed, the rest once finished
    compression: str = "zstd"
    # c['logEncoding']: how text given as bytes is decoded (a step's logEncoding comes first)
    encoding: str = "utf-8"


class LogWriter:
    def __init__(
        self,
        updates: LogAppender,
        *,
        logid: int,
        name: str,
        type: LogType,
        limits: LogLimits | None = None,
        redactor: Redactor | None = None,
        encoding: str | None = None,
    ) -> None:
        self._updates = updates
        self.logid = logid
        self.name = name
        self.type = type
        self.limits = limits or LogLimits()
        # bytes given to add_* are decoded with this (bad bytes become U+FFFD), per stream
        self.encoding = encoding or self.limits.encoding
        codecs.lookup(self.encoding)  # LookupError now, not at the first bytes
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}
        # hides the values of the secrets the master's builds used (they never reach the
        # database nor an observer); one stream redactor per stream, as secrets straddle pieces
        self._redactor = redactor
        self._streams: dict[str, StreamRedactor] = {}
        self._partial: dict[str, str] = {}
        self._pending: list[str] = []
        self._pending_size = 0
        self._stored = 0  # characters stored (or queued) so far
        self._cut = 0  # characters over max_size, not stored
        self._tail: collections.deque[str] = collections.deque()
        self._tail_size = 0
        self._observers: list[LineObserver] = []
        self._on_finish: list[Callable[[], object]] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.finished = False

    def add_observer(self, observer: LineObserver) -> None:
        self._observers.append(observer)

    def add_finish_callback(self, callback: Callable[[], object]) -> None:
        """Called once the log is finished (every line went to the observers)."""
        self._on_finish.append(callback)

    # -- text in -------------------------------------------------------------------------------

    def add_stdout(self, text: str | bytes) -> None:
        self._add("stdout", text)

    def add_stderr(self, text: str | bytes) -> None:
        self._add("stderr", text)

    def add_header(self, text: str | bytes) -> None:
        self._add("header", text)

    def add_content(self, text: str | bytes) -> None:
        """Text of a text or html log (no streams)."""
        self._add("", text)

    # Buildbot's names, which custom steps call
    addStdout = add_stdout
    addStderr = add_stderr
    addHeader = add_header
    addContent = add_content

    def _add(self, stream: str, text: str | bytes) -> None:
        if self.finished:
            raise RuntimeError(f"log {self.name!r} is finished: no more text can be added")
        if isinstance(text, bytes):
            decoder = self._decoders.get(stream)
            if decoder is None:
                decoder = codecs.getincrementaldecoder(self.encoding)(errors="replace")
                self._decoders[stream] = decoder
            text = decoder.decode(text)
        if self._redactor is not None:
            text = self._redacted(stream, text)
        self._complete(stream, text)

    def _complete(self, stream: str, text: str) -> None:
        """Whole lines of ``stream`` out; a partial last line waits for the rest."""
        if not text:
            return
        text = self._partial.pop(stream, "") + text
        cut = text.rfind("\n")
        if cut < len(text) - 1:
            self._partial[stream] = text[cut + 1 :]
            text = text[: cut + 1]
        if text:
            self._lines(stream, text)

    def _redacted(self, stream: str, text: str) -> str:
        redactor = self._streams.get(stream)
        if redactor is None:
            assert self._redactor is not None
            if not self._redactor.active:  # the cheap way while no secret is in use
                return text
            redactor = self._streams[stream] = self._redactor.stream()
        return redactor.feed(text)

    def _lines(self, stream: str, text: str) -> None:
        """Whole lines (``text`` ends with a newline) to the observers and the store.

        Work is done on the whole block with ``str`` methods; only observers, and a block that
        crosses ``c['logMaxSize']``, are fed line by line.
        """
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        if self._observers:
            for line in text[:-1].split("\n"):
                for observer in self._observers:
                    observer(stream, line)
        prefix = STREAM_LETTERS.get(stream, "") if self.type == LogType.STDIO else ""
        if prefix:
            text = prefix + text[:-1].replace("\n", "\n" + prefix) + "\n"
        max_size = self.limits.max_size
        if max_size is None or self._stored + len(text) <= max_size:
            self._queue(text)
        else:
            for line in text[:-1].split("\n"):
                self._store(line + "\n")

    def _store(self, line: str) -> None:
        """One line near ``c['logMaxSize']``: stored while it fits, then cut (and kept in the
        tail when ``c['logMaxTailSize']`` asks)."""
        limits = self.limits
        if limits.max_size is not None and self._stored + len(line) > limits.max_size:
            self._cut += len(line)
            if limits.max_tail_size:
                self._tail.append(line)
                self._tail_size += len(line)
                while self._tail_size > limits.max_tail_size and self._tail:
                    self._tail_size -= len(self._tail.popleft())
            return
        self._queue(line)

    def _queue(self, text: str) -> None:
        self._stored += len(text)
        self._pending.append(text)
        self._pending_size += len(text)
        if self._pending_size >= self.limits.flush_size:
            self._flush_soon()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.limits.flush_interval, self._flush_soon)

    def _flush_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self.flush())

    # -- out to the database -------------------------------------------------------------------

    async def flush(self) -> None:
        """Append everything complete that waits; in order, one append at a time."""
        async with self._lock:
            while self._pending:
                content = "".join(self._pending)
                self._pending, self._pending_size = [], 0
                await self._updates.append_log(
                    self.logid, content, compression=self.limits.compression
                )

    @deferred_compatible
    async def finish(self) -> None:
        """Complete held partial lines, store what waits, and close the log."""
        if self.finished:
            return
        last = await self._complete_all()
        async with self._lock:
            await self._updates.finish_log(
                self.logid, compression=self.limits.compression, last=last
            )
        for callback in self._on_finish:
            callback()

    async def take_last(self) -> str | None:
        """For a caller that closes the log in a transaction of its own (a step's end): what
        :meth:`finish` does but the close: the lines still to store (None if the log was
        already finished). The finish callbacks are called: every line has been seen."""
        if self.finished:
            return None
        last = await self._complete_all()
        for callback in self._on_finish:
            callback()
        return last

    async def _complete_all(self) -> str:
        """Complete held partial lines, mark the log finished, wait for the appends under
        way; the lines still waiting (taken)."""
        for stream, decoder in self._decoders.items():
            if rest := decoder.decode(b"", final=True):
                self._complete(stream, self._redacted(stream, rest) if self._redactor else rest)
        for stream, redactor in self._streams.items():
            self._complete(stream, redactor.flush())
        for stream in list(self._partial):
            self._lines(stream, self._partial.pop(stream) + "\n")
        if self._cut:
            letter = "h" if self.type == LogType.STDIO else ""
            note = (
                f"{letter}log size limit of {self.limits.max_size} characters reached: "
                f"{self._cut} characters not stored"
            )
            if self._tail:
                note += "; the last lines follow"
            self._pending.append(note + "\n")
            self._pending.extend(self._tail)
            self._tail.clear()
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            await asyncio.shield(self._flushing)
        async with self._lock:
            # what still waits goes with the close, in its transaction
            last = "".join(self._pending)
            self._pending, self._pending_size = [], 0
        return last

"""What a running command sends back: ``update`` pairs, output lines, and ``complete``.

docs/worker-protocol.md, "Updates". Output text is cut into complete lines (``newline_re``
matches become ``\\n``, lines over ``max_line_length`` are split), each stream sent as
``[text, [nl_offsets], [times]]``. Pairs are buffered until ``buffer_size`` (accounted as Buildbot
does) or ``buffer_timeout`` seconds after the first buffered pair; any non-text pair flushes at
once. Every message of one command leaves through one :class:`Outbox`, in order, so all of its
``update`` requests precede its ``complete``. The worker does not stall on acks: the outbox
sends them one after the other in its own task. Given ``send`` (the connection's
:meth:`~buildyard.protocol.peer.Peer.send_request`), it does not wait for an ``update``'s answer
before sending what follows, as the stock worker does (its last update and its ``complete``
leave together, and the master answers both in one write); at most :data:`MAX_UNANSWERED` wait
for their answers, and a transfer's request goes only once everything before it is answered.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import operator
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from buildyard.protocol.errors import ConnectionLost, RemoteError

log = structlog.get_logger(__name__)

TEXT_KEYS = frozenset({"stdout", "stderr", "header"})
DEFAULT_NEWLINE_RE = r"(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)"

# sends one worker->master request for this command: (op, fields) -> result
Request = Callable[..., Awaitable[Any]]
# sends one request and returns, once it is written, the future of its result
SendRequest = Callable[..., Awaitable["asyncio.Future[Any]"]]


@dataclasses.dataclass(slots=True)
class Settings:
    """What ``set_worker_settings`` sets; the defaults are the stock worker's."""

    newline_re: str = DEFAULT_NEWLINE_RE
    max_line_length: int = 4096
    buffer_timeout: float = 5.0
    buffer_size: int = 65536


Lines = list[Any]  # [text, [nl_offsets], [times]]


class LineSplitter:
    """Turns chunks of text into complete lines, with the time each line started arriving.

    Output comes in big pieces, so the common case is done on the whole piece with ``str``
    methods (C loops): the newline regex runs only when the piece holds a character it could
    match, and lines are cut one by one only when one is over ``max_line_length``.
    """

    def __init__(self, settings: Settings) -> None:
        self._newline = re.compile(settings.newline_re)
        # the default regex only matches at these characters: without them it has no work
        self._triggers = "\r\x1b\x08" if settings.newline_re == DEFAULT_NEWLINE_RE else None
        self._max = max(1, settings.max_line_length)
        self._partial = ""
        self._partial_time: float | None = None

    def append(self, data: str, now: float | None = None) -> Lines | None:
        now = time.time() if now is None else now
        if not data:
            return None
        started = self._partial_time if self._partial_time is not None else now
        text = self._partial + data
        if self._triggers is None or any(c in text for c in self._triggers):
            text = self._newline.sub("\n", text)
        cut = text.rfind("\n")
        complete, rest = text[: cut + 1], text[cut + 1 :]
        bodies = complete[:-1].split("\n") if complete else []
        # a partial line over the limit is sent in pieces now, its tail kept
        cut_rest = len(rest) > self._max
        while len(rest) > self._max:
            bodies.append(rest[: self._max])
            rest = rest[self._max :]
        self._partial = rest
        self._partial_time = (started if not bodies else now) if rest else None
        if not bodies:
            return None
        if cut_rest or max(map(len, bodies)) > self._max:
            return self._pack(bodies, started, now)
        # every line fits: the text is the lines as they came, offsets are where each ends
        ends = itertools.accumulate(map(operator.add, map(len, bodies), itertools.repeat(1)))
        offsets = list(map(operator.sub, ends, itertools.repeat(1)))
        return [complete, offsets, [started] + [now] * (len(bodies) - 1)]

    def finish(self, now: float | None = None) -> Lines | None:
        """The command ended: a held partial line is completed with ``\\n``."""
        if not self._partial:
            return None
        now = time.time() if now is None else now
        started = self._partial_time if self._partial_time is not None else now
        lines = [self._partial]
        self._partial, self._partial_time = "", None
        return self._pack(lines, started, now)

    def _pack(self, bodies: list[str], started: float, now: float) -> Lines | None:
        """Lines (without their newlines) cut to ``max_line_length``, one at a time."""
        pieces: list[str] = []
        for line in bodies:
            body = line
            if not body:
                pieces.append("\n")
            while body:
                pieces.append(body[: self._max] + "\n")
                body = body[self._max :]
        if not pieces:
            return None
        offsets: list[int] = []
        times: list[float] = []
        pos = 0
        for i, piece in enumerate(pieces):
            pos += len(piece)
            offsets.append(pos - 1)
            times.append(started if i == 0 else now)
        return ["".join(pieces), offsets, times]


# requests waiting to go out before a producing command is made to wait
MAX_BACKLOG = 16
# updates sent whose answers are not in yet, at most (with Outbox's ``send``)
MAX_UNANSWERED = 8


class Outbox:
    """Sends one command's requests in order, in a task of its own; errors are logged."""

    def __init__(
        self, request: Request, *, command_id: str, send: SendRequest | None = None
    ) -> None:
        self._request = request
        self._send = send
        # updates sent and not yet answered, oldest first (with ``send`` only)
        self._unanswered: collections.deque[tuple[str, asyncio.Future[Any]]] = collections.deque()
        self.command_id = command_id
        self._queue: asyncio.Queue[
            tuple[str, dict[str, Any], asyncio.Future[Any] | None] | None
        ] = asyncio.Queue()
        # set each time a request went out, for drain()
        self._sent = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def put(self, op: str, **fields: Any) -> None:
        self._queue.put_nowait((op, fields, None))

    async def drain(self, high_water: int = MAX_BACKLOG) -> None:
        """Wait while more than ``high_water`` requests wait to be sent (backpressure)."""
        while self._queue.qsize() > high_water and not self._task.done():
            self._sent.clear()
            await self._sent.wait()

    async def call(self, op: str, **fields: Any) -> Any:
        """Send a request after everything put so far and wait for its result (transfers'
        flow control: the next block goes only when the master took this one)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, fields, future))
        return await future

    async def _run(self) -> None:
        try:
            while (item := await self._queue.get()) is not None:
                op, fields, future = item
                self._sent.set()
                if self._send is not None and future is None:
                    try:
                        answer = await self._send(op, command_id=self.command_id, **fields)
                    except Exception as exc:
                        if not self._failed(op, exc, None):
                            return
                        continue
                    self._unanswered.append((op, answer))
                    if len(self._unanswered) >= MAX_UNANSWERED and not await self._settle(1):
                        return
                    continue
                if not await self._settle(len(self._unanswered)):
                    if future is not None:
                        future.set_exception(ConnectionLost("an earlier update failed"))
                    return
                try:
                    result = await self._request(op, command_id=self.command_id, **fields)
                except Exception as exc:
                    if not self._failed(op, exc, future):
                        return
                    continue
                if future is not None:
                    future.set_result(result)
            await self._settle(len(self._unanswered))
        finally:
            for _op, answer in self._unanswered:
                answer.cancel()
            self._unanswered.clear()

    async def _settle(self, count: int) -> bool:
        """Wait for the answers of the ``count`` oldest unanswered updates; False when the
        connection failed (what waits was failed)."""
        for _ in range(count):
            op, answer = self._unanswered.popleft()
            try:
                await answer
            except Exception as exc:
                if not self._failed(op, exc, None):
                    return False
        return True

    def _failed(self, op: str, exc: Exception, future: asyncio.Future[Any] | None) -> bool:
        """Log a request that failed and pass its error on; False when the outbox stops."""
        if isinstance(exc, RemoteError):
            log.warning("master_refused_update", command_id=self.command_id, op=op, why=str(exc))
            if future is not None:
                future.set_exception(exc)
            return True
        if isinstance(exc, ConnectionLost | ConnectionError):
            log.info("update_lost", command_id=self.command_id, op=op, why=str(exc))
            if future is not None:
                future.set_exception(ConnectionLost(str(exc)))
        else:
            log.exception("update_failed", command_id=self.command_id, op=op, exc_info=exc)
            if future is not None:
                future.set_exception(exc)
        self._fail_waiting(exc)
        return False

    def _fail_waiting(self, exc: BaseException) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None and item[2] is not None and not item[2].done():
                item[2].set_exception(ConnectionLost(str(exc)))

    async def close(self) -> None:
        """Wait until everything put so far is sent (or the connection is gone)."""
        self._queue.put_nowait(None)
        await self._task

    def cancel(self) -> None:
        self._task.cancel()


class _Run:
    """Lines of one stream that came in a row, kept as they came and joined once, when sent
    (joining at each arrival would copy the buffer again for every pipe read)."""

    __slots__ = ("parts",)

    def __init__(self, lines: Lines) -> None:
        self.parts = [lines]

    def joined(self) -> Lines:
        if len(self.parts) == 1:
            return self.parts[0]
        texts: list[str] = []
        offsets: list[int] = []
        times: list[float] = []
        base = 0
        for text, ends, started in self.parts:
            texts.append(text)
            offsets.extend(map(base.__add__, ends) if base else ends)
            times.extend(started)
            base += len(text)
        return ["".join(texts), offsets, times]


def _sendable(pair: list[Any]) -> list[Any]:
    key, value = pair
    if isinstance(value, _Run):
        return [key, value.joined()]
    if key == "log" and isinstance(value[1], _Run):
        return [key, [value[0], value[1].joined()]]
    return pair


# the pairs that end a command, just before its complete
_ENDING = frozenset({"rc", "elapsed"})


class CommandOutput:
    """Buffers one command's updates and sends them through its :class:`Outbox`."""

    def __init__(self, outbox: Outbox, settings: Settings) -> None:
        self.outbox = outbox
        self.settings = settings
        # by stream name, or ("log", logname) for a watched logfile
        self._splitters: dict[str | tuple[str, str], LineSplitter] = {}
        self._pending: list[list[Any]] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def text(self, stream: str, data: str) -> None:
        """Output of ``stream`` ("stdout", "stderr", "header"); only complete lines leave."""
        splitter = self._splitters.get(stream)
        if splitter is None:
            splitter = self._splitters[stream] = LineSplitter(self.settings)
        lines = splitter.append(data)
        if lines is not None:
            self._buffer(stream, lines)

    def log(self, name: str, data: str) -> None:
        """Text of the watched logfile ``name``, sent as ``["log", [name, lines]]``."""
        splitter = self._splitters.get(("log", name))
        if splitter is None:
            splitter = self._splitters[("log", name)] = LineSplitter(self.settings)
        lines = splitter.append(data)
        if lines is not None:
            self._buffer(("log", name), lines)

    def update(self, key: str, value: Any) -> None:
        """A non-text pair (files, ...): sent at once, after what is buffered. ``rc`` and
        ``elapsed`` come as a command ends: they wait (as text does) for ``complete``, which
        follows at once, so a command's end costs the master one update, not three."""
        self._pending.append([key, value])
        if key not in _ENDING:
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.settings.buffer_timeout, self.flush)

    def _buffer(self, stream: str | tuple[str, str], lines: Lines) -> None:
        last = self._pending[-1] if self._pending else None
        if isinstance(stream, tuple):  # a logfile: its lines go inside [name, lines]
            key, name = stream
            if last is not None and last[0] == key and last[1][0] == name:
                last[1][1].parts.append(lines)
            else:
                self._pending.append([key, [name, _Run(lines)]])
        elif last is not None and last[0] == stream:
            last[1].parts.append(lines)
        else:
            self._pending.append([stream, _Run(lines)])
        self._size += len(lines[0]) + 8 * (len(lines[1]) + len(lines[2]))
        if self._size >= self.settings.buffer_size:
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.settings.buffer_timeout, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            self.outbox.put("update", args=[_sendable(pair) for pair in self._pending])
        self._pending = []
        self._size = 0

    async def drain(self) -> None:
        await self.outbox.drain()

    async def call(self, op: str, **fields: Any) -> Any:
        """Flush what is buffered, then make a request in order and wait for its result."""
        self.flush()
        return await self.outbox.call(op, **fields)

    def finish_lines(self) -> None:
        """Complete every held partial line and flush."""
        for stream, splitter in self._splitters.items():
            lines = splitter.finish()
            if lines is not None:
                self._buffer(stream, lines)
        self.flush()

    async def complete(self, failure: str | None) -> None:
        """Flush everything, send ``complete`` and wait until it is sent."""
        self.finish_lines()
        self.outbox.put("complete", args=failure)
        await self.outbox.close()

"""The message queue shared by every master on one PostgreSQL database (``c['mq'] = {'type':
'postgres'}``): LISTEN/NOTIFY, with a table that keeps each message for a while.

Each master (each process: its *origin*, a random name) numbers the messages it produces 1, 2,
3, ... A message is delivered at once to this master's own subscriptions (no round trip), and
queued for the publisher, which writes it to the ``buildyard_mq`` table and sends a
notification on the ``buildyard_mq`` channel in the same transaction, in production order. The
notification carries the messages themselves (consecutive ones share a notification while it
stays small enough), or only the origin and number of a message too large for a notification
(PostgreSQL takes less than 8000 bytes); the receivers then read that one from the table.

Each master keeps, per origin, the number of the last message it delivered. A notification
from its own origin is skipped (delivered locally already); one already seen is a duplicate; one
after a gap makes the receiver read the missing numbers from the table first, so every
subscription sees another master's messages in that master's order. When the LISTEN connection
is lost, the receiver reconnects (with a delay) and reads from the table everything after the
last number of each origin; what the table no longer holds (rows older than the retention are
deleted) is logged as ``mq_events_missed`` with the origin and the numbers, and counted.

Messages are JSON on the way: datetimes become UNIX seconds (as the REST API shows them).

May import buildyard.master.mq, model and common.
"""

from __future__ import annotations

import asyncio
import calendar
import collections
import datetime
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import structlog

from buildyard.master.mq.base import Body, Key
from buildyard.master.mq.local import LocalMQ

log = structlog.get_logger(__name__)

CHANNEL = "buildyard_mq"
TABLE = "buildyard_mq"
# PostgreSQL refuses a notification payload of 8000 bytes or more; keep room for the wrapping
NOTIFY_LIMIT = 7900
DEFAULT_RETENTION = 600.0
# rows written in one transaction at most
BATCH = 500
# how long the LISTEN connection may stay silent before it is checked with a query
KEEPALIVE = 10.0
# an arbitrary key of the advisory lock that serializes the creation of the table
_SCHEMA_LOCK = 0x6D71_6275_696C_64

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    origin text NOT NULL,
    seq bigint NOT NULL,
    routing_key text NOT NULL,
    body text NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    UNIQUE (origin, seq)
);
CREATE INDEX IF NOT EXISTS {TABLE}_created ON {TABLE} (created);
"""

# what a lost or refused connection raises
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


class MQConnectionLost(ConnectionError):
    pass


def _json_default(value: object) -> Any:
    if isinstance(value, datetime.datetime):
        return calendar.timegm(value.utctimetuple())
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return None


def _dumps(value: object) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"))


class PostgresMQ(LocalMQ):
    """A :class:`LocalMQ` whose messages also go to, and come from, the other masters.

    :meth:`run_publisher` and :meth:`run_listener` are the two tasks the master's mq service
    runs; :attr:`ready` is set once the listener listens (events produced by others before
    then are not delivered)."""

    def __init__(
        self,
        dsn: str,
        *,
        retention: float = DEFAULT_RETENTION,
        reconnect_delay: float = 1.0,
        origin: str | None = None,
    ) -> None:
        super().__init__()
        self._dsn = dsn
        self.retention = retention
        self.reconnect_delay = reconnect_delay
        self.origin = origin or uuid.uuid4().hex[:16]
        self._seq = 0
        # (seq, key json, body json) produced here and not yet written to the table
        self._outbox: collections.deque[tuple[int, str, str]] = collections.deque()
        self._outbox_ready = asyncio.Event()
        self._flushed = asyncio.Event()
        self._flushed.set()
        # per origin: the number of the last message delivered here
        self._last: dict[str, int] = {}
        self.ready = asyncio.Event()
        self._listen_conn: asyncpg.Connection | None = None
        self.published = 0
        self.received = 0
        self.fetched = 0
        self.missed = 0
        self.reconnects = 0

    # -- producing ---------------------------------------------------------------------------

    def produce(self, key: Key, body: Body) -> None:
        super().produce(key, body)
        self._seq += 1
        self._outbox.append((self._seq, _dumps(list(key)), _dumps(body)))
        self._flushed.clear()
        self._outbox_ready.set()

    async def flush(self) -> None:
        """Return once every message produced so far is in the table (and notified)."""
        await self._flushed.wait()

    def _payloads(self, batch: Sequence[tuple[int, str, str]]) -> list[str]:
        """The notifications of ``batch``, in order: consecutive messages share one while it
        stays under :data:`NOTIFY_LIMIT`; one too large alone is sent by its number only."""
        head = f'{{"o":{_dumps(self.origin)},'
        out: list[str] = []
        group: list[str] = []
        size = 0

        def close_group() -> None:
            nonlocal size
            if group:
                out.append(head + '"m":[' + ",".join(group) + "]}")
                group.clear()
                size = 0

        for seq, key, body in batch:
            item = f"[{seq},{key},{body}]"
            length = len(item.encode()) + 1
            if len(head) + 8 + length >= NOTIFY_LIMIT:
                close_group()
                out.append(head + f'"s":{seq}}}')
                continue
            if len(head) + 8 + size + length >= NOTIFY_LIMIT:
                close_group()
            group.append(item)
            size += length
        close_group()
        return out

    async def run_publisher(self) -> None:
        conn: asyncpg.Connection | None = None
        trim_every = max(1.0, min(60.0, self.retention / 4))
        next_trim = time.monotonic()
        await self.ready.wait()  # the listener made the table
        try:
            while True:
                if not self._outbox:
                    self._flushed.set()
                    self._outbox_ready.clear()
                    try:
                        wait = max(0.0, next_trim - time.monotonic())
                        # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns
                        # (swallowing a stop's cancellation) when its awaitable is done at
                        # the same moment, and the loop would go on after the stop
                        async with asyncio.timeout(wait):
                            await self._outbox_ready.wait()
                    except TimeoutError:
                        pass
                try:
                    if conn is None or conn.is_closed():
                        conn = await asyncpg.connect(
                            self._dsn, server_settings={"application_name": self.publisher_name}
                        )
                    batch = [self._outbox[i] for i in range(min(BATCH, len(self._outbox)))]
                    if batch:
                        await self._publish(conn, batch)
                        for _ in batch:
                            self._outbox.popleft()
                        self.published += len(batch)
                    if time.monotonic() >= next_trim:
                        await self._trim(conn)
                        next_trim = time.monotonic() + trim_every
                except _CONNECTION_ERRORS as exc:
                    log.warning(
                        "mq_publish_failed",
                        waiting=len(self._outbox),
                        why=repr(exc),
                        retry_in=self.reconnect_delay,
                    )
                    if conn is not None:
                        conn.terminate()
                        conn = None
                    await asyncio.sleep(self.reconnect_delay)
        finally:
            if conn is not None:
                conn.terminate()

    async def _publish(
        self, conn: asyncpg.Connection, batch: Sequence[tuple[int, str, str]]
    ) -> None:
        async with conn.transaction():
            # a retry after a commit whose answer was lost writes nothing twice; the receivers
            # drop the second notification by its number
            await conn.execute(
                f"INSERT INTO {TABLE} (origin, seq, routing_key, body)"
                " SELECT $1, s, k, b"
                " FROM unnest($2::bigint[], $3::text[], $4::text[]) AS t(s, k, b)"
                " ON CONFLICT (origin, seq) DO NOTHING",
                self.origin,
                [m[0] for m in batch],
                [m[1] for m in batch],
                [m[2] for m in batch],
            )
            # one statement per notification: they are queued (and delivered) in this order
            await conn.executemany(
                "SELECT pg_notify($1, $2)", [(CHANNEL, p) for p in self._payloads(batch)]
            )

    async def _trim(self, conn: asyncpg.Connection) -> None:
        deleted = await conn.execute(
            f"DELETE FROM {TABLE} WHERE created < now() - make_interval(secs => $1)",
            float(self.retention),
        )
        if deleted != "DELETE 0":
            log.debug("mq_trimmed", result=deleted)

    # -- receiving ---------------------------------------------------------------------------

    async def run_listener(self) -> None:
        first = True
        try:
            while True:
                inbox: asyncio.Queue[str | None] = asyncio.Queue()
                conn: asyncpg.Connection | None = None
                try:
                    conn = await asyncpg.connect(
                        self._dsn, server_settings={"application_name": self.listener_name}
                    )
                    self._listen_conn = conn
                    conn.add_termination_listener(_on_close(inbox))
                    await conn.add_listener(CHANNEL, _on_notify(inbox))
                    if first:
                        await self._create_table(conn)
                        await self._start_from_now(conn)
                        first = False
                        self.ready.set()
                        log.info("mq_listening", origin=self.origin, channel=CHANNEL)
                    else:
                        before = self.fetched
                        await self._catch_up(conn)
                        log.info(
                            "mq_reconnected",
                            origin=self.origin,
                            caught_up=self.fetched - before,
                            missed=self.missed,
                        )
                    while True:
                        try:
                            # not wait_for: see run_publisher (a stop would be lost while
                            # notifications keep coming)
                            async with asyncio.timeout(KEEPALIVE):
                                payload = await inbox.get()
                        except TimeoutError:
                            await conn.fetchval("SELECT 1")
                            continue
                        if payload is None:
                            raise MQConnectionLost("the LISTEN connection was closed")
                        await self._receive(conn, payload)
                except _CONNECTION_ERRORS as exc:
                    self.reconnects += 1
                    log.warning(
                        "mq_connection_lost",
                        origin=self.origin,
                        why=repr(exc),
                        retry_in=self.reconnect_delay,
                    )
                finally:
                    self._listen_conn = None
                    if conn is not None:
                        conn.terminate()
                await asyncio.sleep(self.reconnect_delay)
        finally:
            self.ready.clear()

    @property
    def listener_name(self) -> str:
        """The LISTEN connection's ``application_name`` (pg_stat_activity shows it)."""
        return f"buildyard-mq pid={os.getpid()} origin={self.origin}"

    @property
    def publisher_name(self) -> str:
        """The publisher connection's ``application_name``."""
        return f"buildyard-mq-publisher pid={os.getpid()} origin={self.origin}"

    @property
    def listen_pid(self) -> int | None:
        """The server process id of the LISTEN connection (tests cut it)."""
        conn = self._listen_conn
        return None if conn is None else int(conn.get_server_pid())

    async def _create_table(self, conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(_SCHEMA)

    async def _start_from_now(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(f"SELECT origin, max(seq) AS seq FROM {TABLE} GROUP BY origin")
        for row in rows:
            self._last.setdefault(row["origin"], int(row["seq"]))

    async def _catch_up(self, conn: asyncpg.Connection) -> None:
        """After a reconnection: every message of every origin after the last delivered."""
        origins = [r["origin"] for r in await conn.fetch(f"SELECT DISTINCT origin FROM {TABLE}")]
        for origin in sorted(set(origins) | set(self._last)):
            if origin != self.origin:
                await self._fetch_after(conn, origin, before=None)

    async def _receive(self, conn: asyncpg.Connection, payload: str) -> None:
        """One notification: ``{"o": origin, "m": [[seq, key, body], ...]}``, or
        ``{"o": origin, "s": seq}`` for a message to read from the table."""
        try:
            message = json.loads(payload)
            origin = str(message["o"])
            items = (
                [(int(message["s"]), None, None)]
                if "s" in message
                else [(int(seq), key, body) for seq, key, body in message["m"]]
            )
        except (ValueError, KeyError, TypeError):
            log.warning("mq_bad_notification", payload=payload[:200])
            return
        if origin == self.origin:
            return
        for seq, key, body in items:
            await self._receive_one(conn, origin, seq, key, body)

    async def _receive_one(
        self, conn: asyncpg.Connection, origin: str, seq: int, key: Any, body: Any
    ) -> None:
        last = self._last.get(origin, 0)
        if seq <= last:
            return
        if seq > last + 1:
            await self._fetch_after(conn, origin, before=seq)
        if key is not None:
            self.received += 1
            self._deliver(origin, seq, key, body)
            return
        row = await conn.fetchrow(
            f"SELECT routing_key, body FROM {TABLE} WHERE origin = $1 AND seq = $2", origin, seq
        )
        if row is None:
            self._gap(origin, self._last.get(origin, 0) + 1, seq)
            self._last[origin] = seq
            return
        self.fetched += 1
        self._deliver(origin, seq, json.loads(row["routing_key"]), json.loads(row["body"]))

    async def _fetch_after(
        self, conn: asyncpg.Connection, origin: str, *, before: int | None
    ) -> None:
        """Deliver ``origin``'s messages after the last delivered (and before ``before``) from
        the table; log the numbers it no longer holds."""
        after = self._last.get(origin, 0)
        query = f"SELECT seq, routing_key, body FROM {TABLE} WHERE origin = $1 AND seq > $2"
        args: list[Any] = [origin, after]
        if before is not None:
            query += " AND seq < $3"
            args.append(before)
        expected = after + 1
        for row in await conn.fetch(query + " ORDER BY seq", *args):
            seq = int(row["seq"])
            if seq > expected:
                self._gap(origin, expected, seq)
            self.fetched += 1
            self._deliver(origin, seq, json.loads(row["routing_key"]), json.loads(row["body"]))
            expected = seq + 1
        if before is not None and expected < before:
            self._gap(origin, expected, before)
            self._last[origin] = before - 1

    def _gap(self, origin: str, first: int, end: int) -> None:
        self.missed += end - first
        log.error(
            "mq_events_missed",
            origin=origin,
            first=first,
            last=end - 1,
            count=end - first,
            why="no longer in the table (older than the retention, or never written)",
        )

    def _deliver(self, origin: str, seq: int, key: Any, body: Any) -> None:
        self._last[origin] = seq
        if not isinstance(key, list) or not isinstance(body, dict):
            log.warning("mq_bad_message", origin=origin, seq=seq)
            return
        self._fan_out(tuple(str(k) for k in key), body, remote=True)

    def statistics(self) -> dict[str, int]:
        return {
            **super().statistics(),
            "published": self.published,
            "unpublished": len(self._outbox),
            "received": self.received,
            "fetched": self.fetched,
            "missed": self.missed,
            "reconnects": self.reconnects,
        }


def _on_notify(inbox: asyncio.Queue[str | None]) -> Callable[..., None]:
    def callback(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        inbox.put_nowait(payload)

    return callback


def _on_close(inbox: asyncio.Queue[str | None]) -> Callable[..., None]:
    def callback(_conn: object) -> None:
        inbox.put_nowait(None)

    return callback

"""The message queue shared by every master on one PostgreSQL database (``c['mq'] = {'type':
'postgres'}``): LISTEN/NOTIFY, with a table that keeps each message for a while.

Each master (each process: its *origin*, a random name) numbers the messages it produces 1, 2,
3, ... A message is delivered at once to this master's own subscriptions (no round trip), and
queued for the publisher, which writes it to the ``buildyard_mq`` table and sends a
notification on the ``buildyard_mq`` channel in the same transaction, in production order. The
notification names the messages (origin and numbers; it also carries consecutive ones while it
stays small, under the 8000 bytes PostgreSQL takes, for older receivers).

A notification is only a hint: PostgreSQL checks no privilege on NOTIFY, so any role that may
connect could send one. The receiver reads the messages it names from the table (writing there
needs INSERT on it): for the notifications queued together, one query per batch reads, per
origin, the rows after the last delivered up to the highest number named, and delivers what the
table holds. A number named but not in the table delivers nothing and is logged as
``mq_notification_ignored``; it stays open, so the real message with it still comes.

Each master keeps, per origin, the number of the last message it delivered. A notification
from its own origin is skipped (delivered locally already); one already seen is a duplicate; a
hole below a row the table holds (an origin's rows are committed in order) is logged as
missed, so every subscription sees another master's messages once, in that master's order.
When the LISTEN connection is lost, the receiver reconnects (with a delay) and reads from the
table everything after the last number of each origin; what the table no longer holds (rows
older than the retention are deleted) is logged as ``mq_events_missed`` with the origin and the
numbers, and counted.

The publisher keeps at most ``max_outbox`` unwritten messages while the database cannot be
written; beyond that it drops the oldest, logging ``mq_outbox_full`` / ``mq_outbox_dropped``
with the count per key's first part.

Messages are JSON on the way: datetimes become UNIX seconds (as the REST API shows them); a
value of another type becomes null, its type logged once (``mq_value_sent_as_null``).

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
# ignored notifications logged a minute at most, each (a forged flood cannot flood the log)
IGNORED_LOGGED = 20
DEFAULT_RETENTION = 600.0
# events kept in memory for the publisher while the database cannot be written, at most
DEFAULT_MAX_OUTBOX = 100_000
# how often, at most, the dropping of events from a full outbox is logged
_DROP_LOG_EVERY = 10.0
# notifications handled together (one SELECT for all)
DRAIN = 1000
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
    # what asyncpg raises when the server ended the connection (pg_terminate_backend, a
    # restart) while it was idle and the next query finds the protocol mid-way
    asyncpg.InternalClientError,
)


class MQConnectionLost(ConnectionError):
    pass


# the types _json_default sent as null, each logged once per process
_UNSERIALIZABLE_LOGGED: set[str] = set()


def _json_default(value: object) -> Any:
    if isinstance(value, datetime.datetime):
        return calendar.timegm(value.utctimetuple())
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if name not in _UNSERIALIZABLE_LOGGED:
        _UNSERIALIZABLE_LOGGED.add(name)
        log.warning(
            "mq_value_sent_as_null",
            type=name,
            why="the other masters get JSON, which has no such type (logged once per type)",
        )
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
        max_outbox: int = DEFAULT_MAX_OUTBOX,
    ) -> None:
        super().__init__()
        self._dsn = dsn
        self.max_outbox = max(1, max_outbox)
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
        self.ignored = 0
        # the rate limit of the ignored notifications' log lines (see _may_log_ignored)
        self._ignored_window = -60.0
        self._ignored_logged = 0
        self._ignored_unlogged = 0
        self.reconnects = 0
        self.dropped = 0
        # events dropped from the full outbox and not yet reported, by their key's first part
        self._dropped_kinds: collections.Counter[str] = collections.Counter()
        self._dropped_logged_at = -_DROP_LOG_EVERY

    # -- producing ---------------------------------------------------------------------------

    def produce(self, key: Key, body: Body) -> None:
        super().produce(key, body)
        self._seq += 1
        if len(self._outbox) >= self.max_outbox:
            self._drop_oldest()
        self._outbox.append((self._seq, _dumps(list(key)), _dumps(body)))
        self._flushed.clear()
        self._outbox_ready.set()

    def _drop_oldest(self) -> None:
        """The outbox is full (the database has been unreachable for long): the oldest event
        is dropped, so memory stays bounded; the other masters will log its number as missed."""
        _seq, key, _body = self._outbox.popleft()
        try:
            kind = str(json.loads(key)[0])
        except (ValueError, IndexError, TypeError):
            kind = "?"
        self.dropped += 1
        self._dropped_kinds[kind] += 1
        now = time.monotonic()
        if now - self._dropped_logged_at >= _DROP_LOG_EVERY:
            self._dropped_logged_at = now
            self._log_dropped("mq_outbox_full")

    def _log_dropped(self, event: str) -> None:
        log.error(
            event,
            origin=self.origin,
            max_outbox=self.max_outbox,
            dropped=sum(self._dropped_kinds.values()),
            dropped_total=self.dropped,
            kinds=dict(self._dropped_kinds.most_common()),
            why="the database could not be written: the oldest unpublished events are dropped"
            " (the other masters never get them)",
        )
        self._dropped_kinds.clear()

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
                        # by number: a full outbox may have dropped some meanwhile
                        last = batch[-1][0]
                        while self._outbox and self._outbox[0][0] <= last:
                            self._outbox.popleft()
                        self.published += len(batch)
                        if self._dropped_kinds:
                            self._log_dropped("mq_outbox_dropped")
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
                        payloads = [payload]
                        while len(payloads) < DRAIN and not inbox.empty():
                            payloads.append(inbox.get_nowait())
                        if None in payloads:
                            # what came before is read back by the catch-up after reconnecting
                            raise MQConnectionLost("the LISTEN connection was closed")
                        await self._receive(conn, [p for p in payloads if p is not None])
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
                await self._fetch_after(conn, origin)

    async def _receive(self, conn: asyncpg.Connection, payloads: Sequence[str]) -> None:
        """Notifications (``{"o": origin, "m": [[seq, key, body], ...]}``, or ``{"o": origin,
        "s": seq}``) are only hints: anyone who may connect can send one (NOTIFY needs no
        privilege), so the events themselves are read from the table, which only the masters
        write. For each origin named, one query reads the rows after the last delivered up to
        the highest number named; they are delivered notification by notification, in order."""
        hints: list[tuple[str, int, str]] = []  # (origin, highest number named, payload)
        for payload in payloads:
            try:
                message = json.loads(payload)
                origin = str(message["o"])
                if "s" in message:
                    top = int(message["s"])
                else:
                    top = max(int(item[0]) for item in message["m"])
                # what PostgreSQL could not take as a parameter is no master's
                origin.encode()
                if "\x00" in origin or not 0 < top < 2**63:
                    raise ValueError(origin, top)
            except (ValueError, KeyError, TypeError, IndexError):
                log.warning("mq_bad_notification", payload=payload[:200])
                continue
            if origin != self.origin and top > self._last.get(origin, 0):
                hints.append((origin, top, payload))
        if not hints:
            return
        ranges: dict[str, int] = {}
        for origin, top, _ in hints:
            ranges[origin] = max(top, ranges.get(origin, 0))
        origins = sorted(ranges)
        rows = await conn.fetch(
            f"SELECT t.origin, t.seq, t.routing_key, t.body FROM {TABLE} AS t"
            " JOIN unnest($1::text[], $2::bigint[], $3::bigint[]) AS r(o, lo, hi)"
            " ON t.origin = r.o AND t.seq > r.lo AND t.seq <= r.hi"
            " ORDER BY t.origin, t.seq",
            origins,
            [self._last.get(o, 0) for o in origins],
            [ranges[o] for o in origins],
        )
        held: dict[str, collections.deque[asyncpg.Record]] = {
            o: collections.deque() for o in origins
        }
        for row in rows:
            held[row["origin"]].append(row)
        for origin, top, payload in hints:
            queue = held[origin]
            while queue and queue[0]["seq"] <= top:
                row = queue.popleft()
                seq = int(row["seq"])
                expected = self._last.get(origin, 0) + 1
                if seq > expected:
                    # an origin's rows are committed in order: a hole below a row is gone
                    self._gap(origin, expected, seq)
                self.received += 1
                self._deliver(origin, seq, json.loads(row["routing_key"]), json.loads(row["body"]))
            last = self._last.get(origin, 0)
            if top > last:
                # named but not in the table: not written by a master (a forged NOTIFY), or
                # trimmed already; the number stays, so a real event with it still comes
                self.ignored += 1
                if not self._may_log_ignored():
                    continue
                log.warning(
                    "mq_notification_ignored",
                    receiver=self.origin,
                    origin=origin,
                    first=last + 1,
                    last=top,
                    payload=payload[:200],
                    why="the events it names are not in the buildyard_mq table (a notification"
                    " no master sent, or rows already trimmed): nothing delivered",
                )

    def _may_log_ignored(self) -> bool:
        """At most :data:`IGNORED_LOGGED` ``mq_notification_ignored`` lines a minute, so that a
        flood of forged notifications cannot flood the log; the next window's first line says
        how many were not logged (``statistics()['ignored']`` counts them all)."""
        now = time.monotonic()
        if now - self._ignored_window >= 60.0:
            if self._ignored_unlogged:
                log.warning(
                    "mq_notifications_ignored_unlogged",
                    receiver=self.origin,
                    count=self._ignored_unlogged,
                    why=f"more than {IGNORED_LOGGED} in a minute",
                )
            self._ignored_window, self._ignored_logged, self._ignored_unlogged = now, 0, 0
        if self._ignored_logged >= IGNORED_LOGGED:
            self._ignored_unlogged += 1
            return False
        self._ignored_logged += 1
        return True

    async def _fetch_after(self, conn: asyncpg.Connection, origin: str) -> None:
        """Deliver ``origin``'s messages after the last delivered from the table; log the
        numbers it no longer holds."""
        after = self._last.get(origin, 0)
        expected = after + 1
        for row in await conn.fetch(
            f"SELECT seq, routing_key, body FROM {TABLE} WHERE origin = $1 AND seq > $2"
            " ORDER BY seq",
            origin,
            after,
        ):
            seq = int(row["seq"])
            if seq > expected:
                self._gap(origin, expected, seq)
            self.fetched += 1
            self._deliver(origin, seq, json.loads(row["routing_key"]), json.loads(row["body"]))
            expected = seq + 1

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
            "ignored": self.ignored,
            "reconnects": self.reconnects,
            "dropped": self.dropped,
        }


def _on_notify(inbox: asyncio.Queue[str | None]) -> Callable[..., None]:
    def callback(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        inbox.put_nowait(payload)

    return callback


def _on_close(inbox: asyncio.Queue[str | None]) -> Callable[..., None]:
    def callback(_conn: object) -> None:
        inbox.put_nowait(None)

    return callback

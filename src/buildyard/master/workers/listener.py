"""The worker endpoints: msgpack_experimental_v7 over WebSocket, on ``c['protocols']``' port,
and PB on ``c['protocols']['pb']`` (login and conversation in :mod:`.pb`); both may listen at
once, and everything after the login (attach, keepalive, duplicates, disconnection) is shared.

Per connection (docs/worker-protocol.md):

1. the HTTP upgrade must carry ``Authorization: Basic name:password`` of a configured worker
   (401 when missing or wrong, 400 when malformed); refusals are logged with the worker's name;
2. a second connection under a name already connected pings the old one (``print``, 10 s): if
   it answers, the new socket is closed; if not, the old one is dropped and the new one proceeds;
3. ``print attached``, ``get_worker_info``, ``set_worker_settings``, ``listdir`` of its basedir
   and ``mkdir`` of the builder directories it lacks; only then is the worker recorded as
   connected (event ``workers/<id>/connected``) and given builds;
4. a ``keepalive`` every ``keepalive_interval`` seconds; no answer within the interval drops the
   worker; a protocol fault (bad frame, unknown response) closes the socket with the reason;
5. on close every command in flight fails with ConnectionLost, and the worker is recorded as
   disconnected (event ``workers/<id>/disconnected``).

Before step 1 a connection is pending: it must send its upgrade request within
``header_timeout`` and is closed when over ``max_pending_connections``
(:mod:`buildyard.common.connections`); steps 2 and 3 must end within ``attach_timeout``.

Dropping a connection (a worker that stopped answering, a failed connect sequence, the listener
stopping) aborts its TCP connection, as the reference does, rather than waiting for a WebSocket
closing handshake the worker may never answer.

Nothing else on the master depends on one connection: a fault ends that connection only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hmac
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from buildyard.common.limits import LIMIT_KEYS, ConnectionLimits, read_limits
from buildyard.common.ports import Listen, bind, msgpack_listen
from buildyard.common.service import Service
from buildyard.master.data.updates import Updates
from buildyard.master.workers import pb
from buildyard.master.workers.config import AbstractLatentWorker
from buildyard.master.workers.connection import WorkerConnection
from buildyard.protocol import tcp
from buildyard.protocol.codec import MAX_FRAME
from buildyard.protocol.errors import ProtocolError
from buildyard.protocol.frames import FrameBatch
from buildyard.protocol.pb import Broker
from buildyard.protocol.portal import PbPorts, PendingLogins

if TYPE_CHECKING:
    # aiohttp is imported when the msgpack endpoint first listens or serves (a master whose
    # workers speak PB only, without a web server, never loads it)
    from aiohttp import web

    from buildyard.common.connections import ConnectionGuard

log = structlog.get_logger(__name__)

# what of the worker's get_worker_info answer the master records (the ``workerinfo`` field)
_WORKERINFO_KEYS = ("admin", "host", "access_uri", "version")

PROTOCOL = "msgpack_experimental_v7"
DEFAULT_KEEPALIVE = 3600.0
# Buildbot's: how long a worker may be gone before it is announced missing
DEFAULT_MISSING_TIMEOUT = 3600.0
DUPLICATE_PING_TIMEOUT = 10.0
# how long closing the PB listener waits for its connections' handlers to finish
PB_HANDLER_GRACE = 10.0
# from authentication to attached: get_worker_info, set_worker_settings, listdir, mkdir
DEFAULT_ATTACH_TIMEOUT = 120.0
OPTION_KEYS = frozenset({"port", "interface", "attach_timeout", *LIMIT_KEYS})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListenerOptions:
    listen: Listen
    limits: ConnectionLimits
    attach_timeout: float = DEFAULT_ATTACH_TIMEOUT


def read_options(options: Mapping[str, object]) -> ListenerOptions:
    """``c['protocols']['msgpack_experimental_v7']``; ValueError naming what is wrong.

    Keys not in :data:`OPTION_KEYS` are the config's to warn about. The worker port has no use
    for idle keep-alive connections: ``idle_timeout`` defaults to ``header_timeout``."""
    listen = msgpack_listen(options)
    limits = read_limits(options)
    if options.get("idle_timeout") is None:
        limits = dataclasses.replace(limits, idle_timeout=limits.header_timeout)
    attach = options.get("attach_timeout", DEFAULT_ATTACH_TIMEOUT)
    if isinstance(attach, bool) or not isinstance(attach, int | float) or not 0 < attach < 1e9:
        raise ValueError(f"'attach_timeout' must be a positive number of seconds, not {attach!r}")
    return ListenerOptions(listen=listen, limits=limits, attach_timeout=float(attach))


class WorkerListener(Service):
    def __init__(self, *, updates: Updates) -> None:
        super().__init__("_listener")  # "_": no worker name can clash
        self._updates = updates
        self._workers: Mapping[str, Any] = {}
        # worker name -> its builders: (name, workerbuilddir) pairs
        self._dirs: dict[str, list[tuple[str, str]]] = {}
        self.connections: dict[str, WorkerConnection] = {}
        # called with a worker's name once it is attached (ready for builds), and once its
        # connection is gone (the latent workers' lifecycle follows them)
        self.attach_hooks: list[Callable[[str], None]] = []
        self.detach_hooks: list[Callable[[str], None]] = []
        # worker name -> the timer that announces it missing
        self._missing: dict[str, asyncio.Task[None]] = {}
        self._runner: web.AppRunner | None = None
        # the connection of every running handler, and its app, to drop them all when we stop
        self._transports: dict[asyncio.Transport, web.Application] = {}
        self._listen: Listen | None = None
        self._options: ListenerOptions | None = None
        self._guard: ConnectionGuard | None = None
        self.masterid: int | None = None
        self.port: int | None = None
        self._pb_server: asyncio.Server | None = None
        self._pb_listen: Listen | None = None
        self._pb_writers: set[asyncio.StreamWriter] = set()
        # the PB connections that have not logged in yet (small limits, a cap on their number)
        self._pb_pending = PendingLogins("workers")
        # the handler task of every PB connection (asyncio's server starts them), awaited when
        # the listener closes so that each disconnection is recorded before the master stops
        self._pb_handlers: set[asyncio.Task[Any]] = set()
        # the connections the current PB server accepted (a reconfig's new server has its own)
        self._pb_group = PbGroup()
        self.pb_port: int | None = None
        # the PB logins other than workers' (change source, try), on this port or their own
        self.pb_ports = PbPorts()

    @property
    def host(self) -> str | None:
        """The address the msgpack listener was given (None: every interface)."""
        return self._listen.host if self._listen is not None else None

    async def reconfigure(
        self,
        *,
        masterid: int,
        protocols: Mapping[str, Mapping[str, object]],
        workers: Sequence[Any],
        builders: Sequence[Any],
    ) -> None:
        """Take a new configuration at once: :meth:`prepare`, :meth:`configure`, then apply
        and finish the change of address (revert it on failure)."""
        change = await self.prepare(protocols)
        try:
            self.configure(masterid=masterid, workers=workers, builders=builders)
            await change.apply()
        except BaseException:
            await change.revert()
            raise
        await change.finish()

    async def prepare(self, protocols: Mapping[str, Mapping[str, object]]) -> ListenerChange:
        """Read ``c['protocols']`` (ValueError naming what is wrong) and bind a new address
        (OSError when it is taken) before anything changes; nothing is served on it until the
        change is applied."""
        given = protocols.get(PROTOCOL)
        options = read_options(given) if given is not None else None
        listen = options.listen if options is not None else None
        pb_options = protocols.get(pb.PROTOCOL)
        pb_listen = msgpack_listen(pb_options) if pb_options is not None else None
        change = ListenerChange(self, options=options, pb_listen=pb_listen)
        try:
            if listen != self._listen and self.running:
                change.sock = bind(listen) if listen is not None else None
                change.moves = True
            if pb_listen != self._pb_listen and self.running:
                change.pb_sock = bind(pb_listen) if pb_listen is not None else None
                change.pb_moves = True
        except BaseException:
            await change.revert()
            raise
        return change

    def configure(self, *, masterid: int, workers: Sequence[Any], builders: Sequence[Any]) -> None:
        """Which workers may connect, and the builder directories each should have."""
        self.masterid = masterid
        self._workers = {w.name: w for w in workers}
        dirs: dict[str, list[tuple[str, str]]] = {}
        for b in builders:
            for name in b.workernames:
                dirs.setdefault(name, []).append((b.name, str(b.workerbuilddir)))
        changed = {name for name in self.connections if dirs.get(name) != self._dirs.get(name)}
        self._dirs = dirs
        # connected workers learn of builders added or changed (a PB worker runs a builder's
        # commands only once it has that builder)
        if self.running:
            for name in sorted(changed):
                if name in self._workers:
                    conn = self.connections[name]
                    _ = self.spawn(self._update_builders(conn), name=f"builders:{name}")

    async def _update_builders(self, conn: WorkerConnection) -> None:
        try:
            await conn.setup_builders(self._dirs.get(conn.name, ()))
        except (ProtocolError, ConnectionError) as exc:
            log.warning("worker_builders_not_updated", worker=conn.name, reason=str(exc))

    async def drop_unconfigured(self) -> None:
        """Drop the connected workers that are no longer configured."""
        for name, conn in list(self.connections.items()):
            if name not in self._workers:
                log.info("worker_dropped", worker=name, reason="no longer configured")
                await conn.abort()

    async def _runner_on(
        self, sock: socket.socket, limits: ConnectionLimits
    ) -> tuple[web.AppRunner, ConnectionGuard]:
        from aiohttp import web

        from buildyard.common.connections import ConnectionGuard, GuardedSite, ServerLog

        guard = ConnectionGuard(limits, name="workers")
        app = web.Application(client_max_size=MAX_FRAME, middlewares=[guard.middleware])
        app.router.add_get("/{path:.*}", self._handle)
        # the runner's cleanup waits for running handlers (60 s, and 60 s more after
        # cancelling the request), and a handler runs as long as its worker is connected
        app.on_shutdown.append(self._drop_all)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, logger=ServerLog("workers")
        )
        await runner.setup()
        try:
            await GuardedSite(runner, sock=sock, guard=guard).start()
        except BaseException:
            await runner.cleanup()
            raise
        return runner, guard

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._listen = None
        self._guard = None
        self.port = None

    async def stop_service(self) -> None:
        await self._close()
        await self._close_pb(everything=True)
        await self.pb_ports.stop()

    # -- PB ----------------------------------------------------------------------------------

    async def _close_pb(self, *, everything: bool = False) -> None:
        """Close the current PB server and the connections it accepted (``everything``: every
        PB connection; a reconfig's new server may have accepted some already)."""
        server, self._pb_server = self._pb_server, None
        self._pb_listen = None
        self.pb_ports.worker_listen = None
        self.pb_port = None
        if server is not None:
            server.close()
        group, self._pb_group = self._pb_group, PbGroup()
        if everything:
            group = PbGroup()
            group.handlers = dict.fromkeys(self._pb_writers)
            handlers = set(self._pb_handlers)
        else:
            handlers = {task for task in group.handlers.values() if task is not None}
        await group.abort(handlers)
        if server is not None:
            await server.wait_closed()

    async def _pb_client(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        group: PbGroup | None = None,
    ) -> None:
        """One PB connection, from its first byte to its end (asyncio's server task)."""
        address = writer.get_extra_info("peername")
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        self._pb_writers.add(writer)
        handler = asyncio.current_task()
        if handler is not None:
            self._pb_handlers.add(handler)
        group = self._pb_group if group is None else group
        group.handlers[writer] = handler
        login = pb.Login()
        root = pb.LoginRoot(
            peer=peer,
            workers=lambda: self._workers,
            may_connect=self.replace_duplicate,
            login=login,
            services=self.pb_ports.worker_portal,
        )
        broker = Broker(write=writer.transport.write, root=root, name=f"pb peer {peer}")
        self._pb_pending.add(writer, peer, broker)
        for logged_in in (login.done, login.served):
            logged_in.add_done_callback(
                lambda f: None if f.cancelled() else self._pb_pending.logged_in(writer, broker)
            )
        low_latency = tcp.LowLatency(writer)
        read_task = asyncio.get_running_loop().create_task(
            pb.read_into(reader, broker, peer, low_latency.after_read)
        )
        try:
            broker.start()
            waits: set[asyncio.Future[Any]] = {read_task, login.done, login.served, login.refused}
            await asyncio.wait(waits, timeout=pb.LOGIN_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            if login.refused.done() and not (login.done.done() or login.served.done()):
                # one password guess per connection: the refusal was sent, then it ends
                await pb.close_after_refusal(writer, broker)
                return
            if login.served.done():  # a change source or try client: until it hangs up
                await read_task
                return
            if not login.done.done():
                if not read_task.done():
                    log.warning("worker_refused", peer=peer, reason="no login in time")
                return
            name, worker, mind, perspective = login.done.result()
            conn = pb.PbWorkerConnection(
                name=name, broker=broker, mind=mind, abort=lambda: pb.close_writer(writer)
            )
            conn.tcp = low_latency
            perspective.conn = conn
            conn.shutdown_requested = lambda: self._shutdown_requested(conn)
            log.info("worker_logged_in", worker=name, peer=peer, protocol=pb.PROTOCOL)
            await self.run_connection(conn, worker, read_task, abort=writer.transport.abort)
        finally:
            login.done.cancel()
            login.served.cancel()
            login.refused.cancel()
            read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await read_task
            broker.close("connection closed")
            writer.transport.abort()
            self._pb_pending.discard(writer)
            self._pb_writers.discard(writer)
            group.handlers.pop(writer, None)
            if handler is not None:
                self._pb_handlers.discard(handler)

    async def _shutdown_requested(self, conn: WorkerConnection) -> None:
        if conn.workerid is not None:
            await self._updates.request_graceful_shutdown(workerid=conn.workerid)

    async def _drop_all(self, app: web.Application) -> None:
        for transport, its_app in list(self._transports.items()):
            if its_app is app:
                transport.abort()

    # -- one connection ----------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> tuple[str, Any]:
        from aiohttp import web

        peer = request.remote
        header = request.headers.get("Authorization")
        if header is None:
            log.warning("worker_refused", peer=peer, reason="no Authorization header")
            raise web.HTTPUnauthorized(text="no credentials")
        scheme, _, encoded = header.partition(" ")
        try:
            if scheme.lower() != "basic":
                raise ValueError("not Basic authentication")
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            log.warning("worker_refused", peer=peer, reason=f"malformed credentials: {exc}")
            raise web.HTTPBadRequest(text="malformed credentials") from None
        name, sep, password = decoded.partition(":")
        if not sep:
            log.warning("worker_refused", peer=peer, reason="malformed credentials: no ':'")
            raise web.HTTPBadRequest(text="malformed credentials")
        worker = self._workers.get(name)
        if worker is None:
            log.warning("worker_refused", peer=peer, worker=name, reason="unknown worker name")
            raise web.HTTPUnauthorized(text="unknown worker or wrong password")
        expected = worker.login_password  # None: a secret not rendered, no login succeeds
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            log.warning("worker_refused", peer=peer, worker=name, reason="wrong password")
            raise web.HTTPUnauthorized(text="unknown worker or wrong password")
        return name, worker

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        name, worker = self._authenticate(request)
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, autoping=True)
        await ws.prepare(request)
        transport = request.transport
        if transport is not None:
            self._transports[transport] = request.app
        try:
            return await self._serve_worker(request, ws, name, worker)
        finally:
            if transport is not None:
                self._transports.pop(transport, None)

    async def _serve_worker(
        self, request: web.Request, ws: web.WebSocketResponse, name: str, worker: Any
    ) -> web.WebSocketResponse:
        if not await self.replace_duplicate(name):
            await ws.close()
            return ws
        # the frames of one pass of the event loop leave in one write
        frames = FrameBatch(
            request.transport,
            fallback=ws.send_bytes,
            batching=not ws.compress,
            closed=lambda: ws.closed,
        )

        async def close() -> object:
            frames.flush()
            return await ws.close()

        conn = WorkerConnection(name=name, send=frames.send, abort=close)
        conn.frames = frames
        if request.transport is not None:
            # the stock worker (Twisted) keeps Nagle on here too: acknowledge at once
            conn.tcp = tcp.LowLatency(request.transport)
        # the reader belongs to this handler: it is cancelled and awaited before we return
        reader = asyncio.get_running_loop().create_task(self._read(ws, conn))

        def abort() -> None:
            if request.transport is not None:  # it may not answer a closing handshake either
                request.transport.abort()

        try:
            await self.run_connection(conn, worker, reader, abort=abort)
        finally:
            frames.flush()
            await ws.close()
        return ws

    async def replace_duplicate(self, name: str) -> bool:
        """Whether a new connection for ``name`` may proceed: a connection already there that
        still answers a ``print`` keeps its place (False); a silent one is dropped (True)."""
        old = self.connections.get(name)
        if old is not None and await old.answers(DUPLICATE_PING_TIMEOUT):
            log.warning(
                "worker_duplicate_refused", worker=name, reason="already connected and answering"
            )
            return False
        if old is not None:
            log.warning("worker_duplicate_replaces", worker=name, reason="old connection silent")
            await old.abort()
        return True

    async def run_connection(
        self,
        conn: WorkerConnection,
        worker: Any,
        reader: asyncio.Task[None],
        *,
        abort: Callable[[], None],
    ) -> None:
        """Attach ``conn`` (within ``attach_timeout``) and keep it alive until its ``reader``
        (the task reading its socket) ends; then record the disconnection. ``reader`` is
        cancelled and awaited before this returns; ``abort`` drops the socket at once (after a
        fault)."""
        name = conn.name
        attach_timeout = (
            self._options.attach_timeout if self._options is not None else DEFAULT_ATTACH_TIMEOUT
        )
        try:
            try:
                async with asyncio.timeout(attach_timeout):
                    await self._attach(conn, worker)
            except TimeoutError:
                raise TimeoutError(f"not attached within {attach_timeout:g} s") from None
            await self._keepalive(conn, worker, reader)
        except (ProtocolError, ConnectionError, TimeoutError) as exc:
            log.warning("worker_connection_ended", worker=name, reason=str(exc))
            abort()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            conn.lost("connection closed")
            # The database first: once a worker is gone from .connections, it is gone everywhere.
            # A connection replaced by a newer one for the same name records nothing: the
            # connected row is the newer one's.
            current = self.connections.get(name)
            if (
                conn.workerid is not None
                and self.masterid is not None
                and (current is None or current is conn)
            ):
                with contextlib.suppress(Exception):
                    await self._updates.worker_disconnected(
                        workerid=conn.workerid, masterid=self.masterid
                    )
                log.info("worker_disconnected", worker=name, protocol=conn.protocol)
                self._start_missing_timer(name, conn.workerid, worker)
            if self.connections.get(name) is conn:
                del self.connections[name]
                for hook in self.detach_hooks:
                    hook(name)

    async def _read(self, ws: web.WebSocketResponse, conn: WorkerConnection) -> None:
        from aiohttp import WSMsgType

        after_read = conn.tcp.after_read if conn.tcp is not None else None
        async for msg in ws:
            if after_read is not None:
                after_read()
            if msg.type == WSMsgType.BINARY:
                try:
                    await conn.peer.feed(msg.data)
                except ProtocolError as exc:
                    conn.peer.faults += 1
                    log.warning("worker_protocol_fault", worker=conn.name, fault=str(exc))
                    await ws.close(code=1002, message=str(exc)[:120].encode())
                    break
            elif msg.type == WSMsgType.TEXT:
                log.info("worker_text_frame_ignored", worker=conn.name)
            else:
                if msg.type == WSMsgType.ERROR:  # e.g. a frame over MAX_FRAME
                    log.warning(
                        "worker_protocol_fault", worker=conn.name, fault=str(ws.exception())
                    )
                break
        conn.lost("the worker closed the connection")

    async def _attach(self, conn: WorkerConnection, worker: Any) -> None:
        assert self.masterid is not None
        await conn.print("attached")
        info = await conn.get_worker_info()
        conn.workerid = await self._updates.find_worker_id(conn.name)
        conn.attached = True
        self.connections[conn.name] = conn
        self._cancel_missing_timer(conn.name)
        await conn.set_worker_settings()
        await conn.setup_builders(self._dirs.get(conn.name, ()))
        # only now may builds use it (their commands would race the settings and the builder
        # directories otherwise); the "connected" event wakes the distributor
        conn.ready = True
        for hook in self.attach_hooks:
            hook(conn.name)
        workerinfo = {k: info.get(k) for k in _WORKERINFO_KEYS}
        await self._updates.worker_connected(
            workerid=conn.workerid, masterid=self.masterid, workerinfo=workerinfo
        )
        log.info(
            "worker_attached",
            worker=conn.name,
            protocol=conn.protocol,
            version=info.get("version"),
            basedir=info.get("basedir"),
        )

    async def record_connections(self) -> None:
        """Record every attached worker as connected to this master again: another master that
        found this one silent and expired it removed those rows (the workers stayed)."""
        assert self.masterid is not None
        for conn in list(self.connections.values()):
            if not conn.attached or conn.workerid is None or conn.peer.closed:
                continue
            workerinfo = {k: conn.info.get(k) for k in _WORKERINFO_KEYS}
            await self._updates.worker_connected(
                workerid=conn.workerid, masterid=self.masterid, workerinfo=workerinfo
            )

    async def _keepalive(
        self, conn: WorkerConnection, worker: Any, reader: asyncio.Task[None]
    ) -> None:
        interval = float(worker.keepalive_interval or DEFAULT_KEEPALIVE)
        while not reader.done():
            done, _ = await asyncio.wait({reader}, timeout=interval)
            if done:
                return
            try:
                async with asyncio.timeout(interval):
                    await conn.keepalive()
            except TimeoutError:
                raise TimeoutError(f"no answer to keepalive within {interval:g} s") from None

    # -- a worker gone for its missing_timeout ----------------------------------------------

    def _start_missing_timer(self, name: str, workerid: int, worker: Any) -> None:
        timeout = getattr(worker, "missing_timeout", None)
        timeout = DEFAULT_MISSING_TIMEOUT if timeout is None else float(timeout)
        # a latent worker leaves when its instance stops: that is not missing (its
        # missing_timeout bounds the wait for a start to connect instead)
        if timeout <= 0 or not self.running or isinstance(worker, AbstractLatentWorker):
            return
        self._cancel_missing_timer(name)
        self._missing[name] = self.spawn(
            self._missing_after(name, workerid, worker, timeout), name=f"missing:{name}"
        )

    def _cancel_missing_timer(self, name: str) -> None:
        task = self._missing.pop(name, None)
        if task is not None:
            task.cancel()

    async def _missing_after(self, name: str, workerid: int, worker: Any, after: float) -> None:
        gone_since = time.time()
        await asyncio.sleep(after)
        self._missing.pop(name, None)
        if name in self.connections:
            return
        log.warning("worker_missing", worker=name, missing_for=after)
        await self._updates.worker_missing(
            workerid=workerid,
            last_connection=time.ctime(gone_since),
            notify=tuple(getattr(worker, "notify_on_missing", ()) or ()),
        )

    def statistics(self) -> dict[str, int]:
        guard = self._guard.statistics() if self._guard is not None else {}
        return {
            **super().statistics(),
            **{f"tcp_{key}": value for key, value in guard.items()},
            "connections": len(self.connections),
            "pb_sockets": len(self._pb_writers),
        }


class PbGroup:
    """The connections one PB server accepted, and their handler tasks."""

    def __init__(self) -> None:
        self.handlers: dict[asyncio.StreamWriter, asyncio.Task[Any] | None] = {}

    async def abort(self, handlers: set[asyncio.Task[Any]] | None = None) -> None:
        if handlers is None:
            handlers = {task for task in self.handlers.values() if task is not None}
        for writer in list(self.handlers):
            writer.transport.abort()
        if handlers:
            # each ends once its reader saw the abort; bounded in case one is stuck in the DB
            await asyncio.wait(handlers, timeout=PB_HANDLER_GRACE)


class ListenerChange:
    """A prepared change of the listeners' options (:meth:`WorkerListener.prepare`): the
    msgpack listener's, and PB's.

    ``apply()`` serves a new address next to the old one; ``finish()`` closes the old one
    (dropping the workers connected there, and those no longer configured) and puts the new
    options in force (new limits on an unchanged address too); ``revert()`` closes the new one,
    and the old one serves on as before.
    """

    def __init__(
        self,
        listener: WorkerListener,
        *,
        options: ListenerOptions | None,
        pb_listen: Listen | None,
    ) -> None:
        self._listener = listener
        self._options, self._pb_listen = options, pb_listen
        # new addresses, bound by prepare()
        self.sock: socket.socket | None = None
        self.moves = False
        self.pb_sock: socket.socket | None = None
        self.pb_moves = False
        self._runner: web.AppRunner | None = None
        self._guard: ConnectionGuard | None = None
        self._pb_server: asyncio.Server | None = None
        self._pb_group = PbGroup()
        self._previous_worker_listen: Listen | None = listener.pb_ports.worker_listen

    async def apply(self) -> None:
        # the services that share the worker PB port (change source, try) register in the
        # steps after this one: they find it here
        ports = self._listener.pb_ports
        self._previous_worker_listen, ports.worker_listen = ports.worker_listen, self._pb_listen
        if self.sock is not None and self._options is not None:
            self._runner, self._guard = await self._listener._runner_on(
                self.sock, self._options.limits
            )
            self.sock = None  # the site owns it from here (revert closes it until then)
        if self.pb_sock is not None:
            group, client = self._pb_group, self._listener._pb_client
            self._pb_server = await asyncio.start_server(
                lambda reader, writer: client(reader, writer, group), sock=self.pb_sock
            )
            self.pb_sock = None  # the server owns it from here

    async def finish(self) -> None:
        listener, options = self._listener, self._options
        listener._options = options
        if self.moves:
            await listener._close()
            listener._runner, listener._guard = self._runner, self._guard
            listener._listen = options.listen if options is not None else None
            if self._runner is not None and options is not None:
                addresses = self._runner.addresses
                listener.port = int(addresses[0][1]) if addresses else options.listen.port
                log.info(
                    "worker_listener_listening",
                    host=options.listen.host or "*",
                    port=listener.port,
                )
        elif listener._guard is not None and options is not None:
            listener._guard.configure(options.limits)
        if self.pb_moves:
            await listener._close_pb()
            listener._pb_server, listener._pb_listen = self._pb_server, self._pb_listen
            listener._pb_group = self._pb_group
            listener.pb_ports.worker_listen = self._pb_listen
            if self._pb_server is not None and self._pb_listen is not None:
                listener.pb_port = int(self._pb_server.sockets[0].getsockname()[1])
                log.info(
                    "worker_listener_listening",
                    protocol=pb.PROTOCOL,
                    host=self._pb_listen.host or "*",
                    port=listener.pb_port,
                )
        await listener.drop_unconfigured()

    async def revert(self) -> None:
        self._listener.pb_ports.worker_listen = self._previous_worker_listen
        if self._runner is not None:
            await self._runner.cleanup()
        if self._pb_server is not None:
            self._pb_server.close()
            # the connections it accepted first: wait_closed() waits for them (3.12.1+)
            await self._pb_group.abort()
            await self._pb_server.wait_closed()
        for sock in (self.sock, self.pb_sock):
            if sock is not None:
                sock.close()

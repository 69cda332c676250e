"""Workers over Perspective Broker, the stock buildbot-worker's default protocol.

One TCP connection per worker, speaking banana/jelly/PB (buildyard.protocol.pb):

1. login as Twisted cred does it: the worker calls ``login(name)`` on our root object and gets
   a challenge and a challenger; it calls ``respond(md5(md5(password) + challenge), mind)``,
   where ``mind`` is its bot object. A wrong name or password is answered with Twisted's
   ``UnauthorizedLogin`` failure (the stock worker logs "unauthorized login" and exits); a
   duplicate name is handled as for msgpack (the old connection is pinged; the new one is
   refused with a failure if the old one answers). A connection that does not log in within
   :data:`LOGIN_TIMEOUT` is closed.
2. the answer to ``respond`` is the worker's perspective (``keepalive``, ``shutdown``); the
   master then attaches as for msgpack (listener.run_connection): ``print``,
   ``getWorkerInfo``, ``setBuilderList`` (the worker makes the builder directories and
   answers with one object per builder), keepalives as ``print``.
3. a command is ``startCommand(command_ref, command_id, name, args)`` on its builder's
   object; the worker reports through ``command_ref``: ``update([[{key: value}, 0], ...])``
   and ``complete(failure)``. Transfers pass a writer (``write``, ``close``, ``utime``,
   ``unpack``) or a reader (``read``, ``close``) object in the arguments.

:class:`PbWorkerConnection` is a :class:`WorkerConnection` (the rest of the master does not know
which protocol a worker speaks): it turns the master's msgpack-form commands into PB's forms,
and PB's callbacks into the same update / transfer handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog

from buildyard.master.workers.connection import CommandResult, WorkerConnection, _Running
from buildyard.protocol.codec import Message
from buildyard.protocol.errors import ConnectionLost, ProtocolError, RemoteError
from buildyard.protocol.pb import Broker, CallFailed, Referenceable, RemoteReference
from buildyard.protocol.peer import RequestFailed
from buildyard.protocol.portal import Portal, check_response, unauthorized

log = structlog.get_logger(__name__)

PROTOCOL = "pb"
LOGIN_TIMEOUT = 60.0
UNAUTHORIZED = "twisted.cred.error.UnauthorizedLogin"
_UNAUTHORIZED_PARENTS = (
    UNAUTHORIZED,
    "twisted.cred.error.LoginFailed",
    "twisted.cred.error.Unauthorized",
    "builtins.Exception",
    "builtins.BaseException",
    "builtins.object",
)
_TEXT = frozenset({"stdout", "stderr", "header"})


async def _no_msgpack(frame: bytes) -> None:
    raise ConnectionLost("a PB connection sends no msgpack frames")


def _str(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class PbWorkerConnection(WorkerConnection):
    protocol = PROTOCOL

    def __init__(
        self,
        *,
        name: str,
        broker: Broker,
        mind: RemoteReference,
        abort: Callable[[], Awaitable[object]],
    ) -> None:
        super().__init__(name=name, send=_no_msgpack, abort=abort)
        self.broker = broker
        self.mind = mind
        self.builders: dict[str, RemoteReference] = {}
        # set once setBuilderList answered (or the connection is gone): commands wait for it,
        # as the worker's builder objects are what runs them
        self._builders_ready = asyncio.Event()
        self._command_builders: dict[str, RemoteReference] = {}
        self.shutdown_requested: Callable[[], Awaitable[None]] | None = None

    # -- master -> worker ------------------------------------------------------------------

    async def print(self, message: str) -> None:
        await self.mind.call("print", message=message)

    async def keepalive(self) -> None:
        await self.mind.call("print", message="keepalive")  # as Buildbot's PB master does

    async def shutdown(self) -> None:
        await self.mind.call("shutdown")

    async def get_worker_info(self) -> dict[str, Any]:
        info = await self.mind.call("getWorkerInfo")
        if not isinstance(info, dict):
            raise ConnectionLost(f"worker {self.name} sent no info map")
        self.info = {_str(k): _str(v) for k, v in info.items()}
        return self.info

    async def set_worker_settings(self) -> None:
        """PB has no such call: the worker keeps its own output buffering settings."""

    async def setup_builders(self, builders: Sequence[tuple[str, str]]) -> None:
        refs = await self.mind.call("setBuilderList", [(n, d) for n, d in builders])
        if not isinstance(refs, dict) or not all(
            isinstance(r, RemoteReference) for r in refs.values()
        ):
            raise ProtocolError(f"worker {self.name} answered setBuilderList without builders")
        self.builders = {_str(k): v for k, v in refs.items()}
        self._builders_ready.set()

    async def run_command(
        self, command_name: str, args: dict[str, Any], **kwargs: Any
    ) -> CommandResult:
        paths = args.get("paths")
        if command_name == "mkdir" and isinstance(paths, list) and len(paths) > 1:
            # PB's mkdir takes one directory: one command each, stopping at the first failure
            updates: list[tuple[str, Any]] = []
            for path in paths:
                one = await super().run_command("mkdir", {**args, "paths": [path]}, **kwargs)
                updates += one.updates
                if one.failure is not None or one.rc != 0:
                    return CommandResult(updates=updates, failure=one.failure)
            return CommandResult(updates=updates, failure=None)
        return await super().run_command(command_name, args, **kwargs)

    async def _start_command(self, fields: dict[str, Any], running: _Running) -> None:
        command_id = str(fields["command_id"])
        builder_name = fields.get("builder_name")
        await self._builders_ready.wait()
        if self.peer.closed:
            raise ConnectionLost(f"worker {self.name} lost")
        if builder_name is not None:
            builder = self.builders.get(builder_name)
        else:  # a command outside any build: paths are absolute, any builder runs it
            builder = next(iter(self.builders.values()), None)
        if builder is None:
            raise RemoteError(f"worker {self.name} has no builder {builder_name!r}")
        name, args = _pb_command(fields["command_name"], fields["args"])
        if running.writer is not None:
            args["writer"] = _Writer(self, command_id)
        if running.reader is not None:
            args["reader"] = _Reader(self, command_id)
        self._command_builders[command_id] = builder
        ref = _CommandRef(self, command_id)
        try:
            await builder.call("startCommand", ref, command_id, name, args)
        except BaseException:
            self._command_builders.pop(command_id, None)
            raise
        running.done.add_done_callback(lambda _f: self._command_builders.pop(command_id, None))

    async def interrupt(self, command_id: str, why: str) -> None:
        builder = self._command_builders.get(command_id)
        if builder is None:
            return  # ended meanwhile
        await builder.call("interruptCommand", command_id, why)

    async def abort(self) -> None:
        await super().abort()
        self.broker.close("dropped by the master")

    def lost(self, reason: str) -> None:
        super().lost(reason)
        self.broker.close(reason)
        self._builders_ready.set()

    # -- worker -> master, through our objects -----------------------------------------------

    def progress_now(self, op: str, command_id: str, **fields: Any) -> None:
        """A command's ``update`` or ``complete``, as the msgpack handler takes it."""
        try:
            self.progress(op, {"command_id": command_id, **fields})
        except RequestFailed as exc:
            raise CallFailed(str(exc)) from None

    async def handle(self, op: str, command_id: str, **fields: Any) -> Any:
        """A callback of one command, as the msgpack handler takes it."""
        message: Message = {"command_id": command_id, **fields}
        try:
            return await self._handle(op, message)
        except RequestFailed as exc:
            raise CallFailed(str(exc)) from None


def _pb_command(name: str, args: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The master's (msgpack) form of a command in PB's form. Paths are absolute: the worker
    joins them to the builder's directory, which leaves an absolute path as it is."""
    a = dict(args)
    if name == "mkdir" and "paths" in a:
        (a["dir"],) = a.pop("paths")
    elif name == "rmdir" and "paths" in a:
        a["dir"] = list(a.pop("paths"))
    elif name == "cpdir" and "from_path" in a:
        a["fromdir"] = a.pop("from_path")
        a["todir"] = a.pop("to_path")
    elif name == "stat" and "path" in a:
        a["file"] = a.pop("path")
    elif name == "listdir" and "path" in a:
        a["dir"] = a.pop("path")
    return name, a


def _pairs(updates: Any) -> list[list[Any]]:
    """PB's ``[[{key: value}, 0], ...]`` as msgpack's ``[[key, value], ...]``: text as
    ``[text]`` and a log as ``[name, [text]]``, the shapes the msgpack workers send."""
    if not isinstance(updates, list | tuple):
        raise CallFailed("update takes a list of [update, number] pairs")
    pairs: list[list[Any]] = []
    for entry in updates:
        if not (isinstance(entry, list | tuple) and len(entry) == 2 and isinstance(entry[0], dict)):
            raise CallFailed("each update is an [update dict, number] pair")
        for key, sent in entry[0].items():
            if not isinstance(key, str):
                raise CallFailed("update keys are strings")
            value = sent
            if key in _TEXT:
                value = [_str(sent)]
            elif key == "log" and isinstance(sent, list | tuple) and len(sent) == 2:
                value = [sent[0], [_str(sent[1])]]
            pairs.append([key, value])
    return pairs


class _CommandRef(Referenceable):
    """The master's end of one command, which the worker reports to."""

    # The stock worker (4.x and 3.x) sends its updates and ``complete`` without waiting for
    # their answers (it only logs an error one of them brings), and it forgets the command
    # before it sends ``complete``: those answers may wait for the next ``startCommand``
    # and share its write (pb.LAZY_DELAY at most), one wake-up of the worker per command
    # instead of two. An error still leaves at once.
    lazy_answers = frozenset({"update", "complete"})

    def __init__(self, conn: PbWorkerConnection, command_id: str) -> None:
        self._conn, self._id = conn, command_id

    # plain methods: the broker answers them as they arrive, without a task each

    def remote_update(self, updates: Any) -> None:
        self._conn.progress_now("update", self._id, args=_pairs(updates))

    def remote_complete(self, failure: Any = None) -> None:
        self._conn.progress_now(
            "complete", self._id, args=None if failure is None else str(failure)
        )


class _Writer(Referenceable):
    """Where an upload's data goes (the worker's ``writer``)."""

    def __init__(self, conn: PbWorkerConnection, command_id: str) -> None:
        self._conn, self._id = conn, command_id

    async def remote_write(self, data: Any) -> None:
        if isinstance(data, str):  # Buildbot's writer takes text too
            data = data.encode("utf-8")
        await self._conn.handle("update_upload_file_write", self._id, args=data)

    async def remote_close(self) -> None:
        await self._conn.handle("update_upload_file_close", self._id)

    async def remote_utime(self, times: Any) -> None:
        if not (isinstance(times, list | tuple) and len(times) == 2):
            raise CallFailed("utime takes (access_time, modified_time)")
        await self._conn.handle(
            "update_upload_file_utime", self._id, access_time=times[0], modified_time=times[1]
        )

    async def remote_unpack(self) -> None:
        await self._conn.handle("update_upload_directory_unpack", self._id)


class _Reader(Referenceable):
    """Where a download's data comes from (the worker's ``reader``)."""

    def __init__(self, conn: PbWorkerConnection, command_id: str) -> None:
        self._conn, self._id = conn, command_id

    async def remote_read(self, length: Any) -> bytes:
        data = await self._conn.handle("update_read_file", self._id, length=length)
        return data if isinstance(data, bytes) else b""

    async def remote_close(self) -> None:
        await self._conn.handle("update_read_file_close", self._id)


# -- login ----------------------------------------------------------------------------------


class Login:
    """What one connection's login settles: the worker, its config and its bot object."""

    def __init__(self) -> None:
        self.done: asyncio.Future[tuple[str, Any, RemoteReference, Perspective]] = (
            asyncio.get_running_loop().create_future()
        )
        # set when the login is one of the port's other services (change source, try user):
        # the connection then lasts until the client closes it
        self.served: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # set when a password was refused: the connection is closed once the refusal is sent
        # (one guess per connection)
        self.refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def refuse(self) -> None:
        if not self.refused.done():
            self.refused.set_result(None)


class Perspective(Referenceable):
    """The worker's view of the master after login (Buildbot's ``perspective_*``)."""

    def __init__(self) -> None:
        self.conn: PbWorkerConnection | None = None

    def remote_keepalive(self) -> None:
        """The worker's keepalive: nothing to answer."""

    async def remote_shutdown(self) -> None:
        conn = self.conn
        if conn is not None and conn.shutdown_requested is not None:
            log.info("worker_requests_shutdown", worker=conn.name)
            await conn.shutdown_requested()


class LoginRoot(Referenceable):
    """The root object a PB client logs in through."""

    def __init__(
        self,
        *,
        peer: str,
        workers: Callable[[], Mapping[str, Any]],
        may_connect: Callable[[str], Awaitable[bool]],
        login: Login,
        services: Portal | None = None,
    ) -> None:
        self._services = services
        self._peer = peer
        self._workers = workers
        self._may_connect = may_connect
        self._login = login

    def remote_login(self, username: Any) -> tuple[bytes, Referenceable]:
        if self._login.done.done():
            raise CallFailed("already logged in")
        name = _str(username)
        if not isinstance(name, str):
            raise CallFailed("the user name must be a string")
        challenge = hashlib.md5(os.urandom(32)).digest()  # Twisted cred's MD5 challenge
        return challenge, _Challenger(self, name, challenge)

    async def respond(self, name: str, challenge: bytes, response: Any, mind: Any) -> Referenceable:
        service = self._services.get(name) if self._services is not None else None
        if service is not None:  # a user of the port's other services comes before workers
            if not check_response(service.password, challenge, response):
                log.warning("pb_login_refused", peer=self._peer, user=name, reason="wrong password")
                self._login.refuse()
                raise unauthorized()
            if self._login.done.done() or self._login.served.done():
                raise CallFailed("already logged in")
            log.info("pb_logged_in", peer=self._peer, user=name, service=service.owner)
            self._login.served.set_result(None)
            return service.perspective(self._peer)
        worker = self._workers().get(name)
        if worker is None:
            log.warning(
                "worker_refused", peer=self._peer, worker=name, reason="unknown worker name"
            )
            self._login.refuse()
            raise _unauthorized()
        password = worker.login_password  # None: a secret not rendered, no login succeeds
        expected = hashlib.md5(hashlib.md5((password or "").encode()).digest() + challenge).digest()
        if (
            password is None
            or not isinstance(response, bytes)
            or not hmac.compare_digest(response, expected)
        ):
            log.warning("worker_refused", peer=self._peer, worker=name, reason="wrong password")
            self._login.refuse()
            raise _unauthorized()
        if not isinstance(mind, RemoteReference):
            raise CallFailed("respond needs the worker's bot object as its mind")
        if self._login.done.done() or self._login.served.done():
            raise CallFailed("already logged in")
        if not await self._may_connect(name):
            # as Buildbot: the stock worker logs the failure and exits
            raise CallFailed("rejecting duplicate worker", "builtins.RuntimeError")
        perspective = Perspective()
        if not self._login.done.done():
            self._login.done.set_result((name, worker, mind, perspective))
        return perspective


def _unauthorized() -> CallFailed:
    return CallFailed("unknown worker or wrong password", UNAUTHORIZED, _UNAUTHORIZED_PARENTS)


class _Challenger(Referenceable):
    def __init__(self, root: LoginRoot, name: str, challenge: bytes) -> None:
        self._root, self._name, self._challenge = root, name, challenge

    async def remote_respond(self, response: Any, mind: Any = None) -> Referenceable:
        return await self._root.respond(self._name, self._challenge, response, mind)


# -- one connection ----------------------------------------------------------------------------


async def read_into(
    reader: asyncio.StreamReader,
    broker: Broker,
    peer: str,
    after_read: Callable[[], None] | None = None,
) -> None:
    """Feed ``broker`` until the socket ends or the peer breaks the protocol (logged with
    its address, and the connection closed by the caller). ``after_read`` is called after
    each read (:meth:`buildyard.protocol.tcp.LowLatency.after_read`)."""
    try:
        while data := await reader.read(256 * 1024):
            if after_read is not None:
                after_read()
            broker.feed(data)
    except ProtocolError as exc:
        log.warning("worker_protocol_fault", peer=peer, protocol=PROTOCOL, fault=str(exc))
    except ConnectionError:
        pass
    broker.close("the worker closed the connection")


# how long a refused login's answer may take to reach the peer before its connection is cut
REFUSAL_FLUSH = 5.0


async def close_after_refusal(writer: asyncio.StreamWriter, broker: Broker) -> None:
    """Close a connection whose login was refused once its answer is written (bounded)."""
    broker.flush()
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), REFUSAL_FLUSH)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()
    with contextlib.suppress(Exception):
        await writer.wait_closed()

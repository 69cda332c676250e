"""PB logins routed by user name: several services on one port, or each on its own.

Buildbot's PB port serves workers (each logs in under its worker name), the PB change source
(user ``change`` by default) and try users on one port; a service may also ask for a port of
its own. Here:

* a :class:`Portal` maps a user name to a :class:`Registration`: its password and a factory of
  the perspective (our object the client calls after login, its ``remote_<name>`` methods);
* :class:`PbPorts` is the master's set of portals: the one on the worker listener's PB port
  (``c['protocols']['pb']``, which also knows the workers) and one per other port a service
  asked for, served by :func:`serve` while anything is registered on it. Registering a user
  name twice on one port is an error naming both.

The login itself is Twisted cred's MD5 challenge (:func:`check_response`): the client calls
``login(name)`` on the root object, gets ``(challenge, challenger)`` and calls
``challenger.respond(md5(md5(password) + challenge), mind)``; the answer is the perspective.
A wrong name or password is answered with Twisted's ``UnauthorizedLogin``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Any

import structlog

from buildyard.common.limits import ConnectionLimits
from buildyard.common.ports import Listen, bind
from buildyard.protocol import banana
from buildyard.protocol.errors import ProtocolError
from buildyard.protocol.pb import Broker, CallFailed, Referenceable
from buildyard.protocol.tcp import LowLatency

log = structlog.get_logger(__name__)

LOGIN_TIMEOUT = 60.0
# how long a refused login's answer may take to reach the peer before its connection is cut
REFUSAL_FLUSH = 5.0


class PendingLogins:
    """A PB server's connections that have not logged in yet.

    Each reads with the small pre-login message limits (:data:`banana.PRE_LOGIN_MESSAGE`
    bytes, :data:`banana.PRE_LOGIN_NODES` elements) until it logs in, and when more than
    ``cap`` (the HTTP listeners' default ``max_pending_connections``) are pending, the
    longest-pending is closed."""

    def __init__(self, name: str, cap: int | None = None) -> None:
        self.name = name
        self.cap = ConnectionLimits().pending_cap() if cap is None else cap
        self._pending: collections.OrderedDict[asyncio.StreamWriter, str] = (
            collections.OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, writer: asyncio.StreamWriter, peer: str, broker: Broker) -> None:
        broker.decoder.limit(max_message=banana.PRE_LOGIN_MESSAGE, max_nodes=banana.PRE_LOGIN_NODES)
        self._pending[writer] = peer
        while len(self._pending) > self.cap:
            oldest, oldest_peer = self._pending.popitem(last=False)
            log.warning(
                "pb_login_refused", peer=oldest_peer, server=self.name, reason="over_max_pending"
            )
            oldest.transport.abort()

    def logged_in(self, writer: asyncio.StreamWriter, broker: Broker) -> None:
        """The connection logged in: it leaves the pending set and gets the full limits."""
        if self._pending.pop(writer, None) is not None:
            broker.decoder.limit(max_message=banana.MAX_MESSAGE, max_nodes=banana.MAX_NODES)

    def discard(self, writer: asyncio.StreamWriter) -> None:
        self._pending.pop(writer, None)


UNAUTHORIZED = "twisted.cred.error.UnauthorizedLogin"
UNAUTHORIZED_PARENTS = (
    UNAUTHORIZED,
    "twisted.cred.error.LoginFailed",
    "twisted.cred.error.Unauthorized",
    "builtins.Exception",
    "builtins.BaseException",
    "builtins.object",
)


class PortalError(Exception):
    """A registration that cannot be made (the user name is taken on that port)."""


def unauthorized(what: str = "unknown user or wrong password") -> CallFailed:
    return CallFailed(what, UNAUTHORIZED, UNAUTHORIZED_PARENTS)


def new_challenge() -> bytes:
    return hashlib.md5(os.urandom(32)).digest()


def check_response(password: str, challenge: bytes, response: object) -> bool:
    """Whether ``response`` is Twisted cred's answer to ``challenge`` for ``password``."""
    expected = hashlib.md5(hashlib.md5(password.encode("utf-8")).digest() + challenge).digest()
    return isinstance(response, bytes) and hmac.compare_digest(response, expected)


def respond(password: bytes, challenge: bytes) -> bytes:
    """The client's side of :func:`check_response`."""
    return hashlib.md5(hashlib.md5(password).digest() + challenge).digest()


@dataclasses.dataclass(eq=False, kw_only=True)
class Registration:
    """One user name on one port: who registered it (for messages), its password, and the
    perspective a successful login gets (called with the client's address)."""

    owner: str
    username: str
    password: str
    perspective: Callable[[str], Referenceable]


class Portal:
    """The registrations of one port."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._registrations: dict[str, Registration] = {}

    def register(self, registration: Registration) -> None:
        taken = self._registrations.get(registration.username)
        if taken is not None and taken is not registration:
            raise PortalError(
                f"{registration.owner}: user name {registration.username!r} is already "
                f"registered on {self.description} by {taken.owner}"
            )
        self._registrations[registration.username] = registration

    def unregister(self, registration: Registration) -> None:
        if self._registrations.get(registration.username) is registration:
            del self._registrations[registration.username]

    def get(self, username: str) -> Registration | None:
        return self._registrations.get(username)

    def __len__(self) -> int:
        return len(self._registrations)


class PortalRoot(Referenceable):
    """The root object of a port that serves only registrations (no workers)."""

    def __init__(self, portal: Portal, peer: str) -> None:
        self._portal, self._peer = portal, peer
        self.logged_in = asyncio.get_running_loop().create_future()
        # set when a password was refused: one guess per connection
        self.refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def remote_login(self, username: Any) -> tuple[bytes, Referenceable]:
        name = username.decode("utf-8", "replace") if isinstance(username, bytes) else username
        if not isinstance(name, str):
            raise CallFailed("the user name must be a string")
        challenge = new_challenge()
        return challenge, _Challenger(self, name, challenge)

    def check(self, name: str, challenge: bytes, response: object) -> Referenceable:
        registration = self._portal.get(name)
        if registration is None or not check_response(registration.password, challenge, response):
            log.warning(
                "pb_login_refused",
                peer=self._peer,
                user=name,
                reason="unknown user" if registration is None else "wrong password",
            )
            if not self.refused.done():
                self.refused.set_result(None)
            raise unauthorized()
        log.info("pb_logged_in", peer=self._peer, user=name, service=registration.owner)
        if not self.logged_in.done():
            self.logged_in.set_result(None)
        return registration.perspective(self._peer)


class _Challenger(Referenceable):
    def __init__(self, root: PortalRoot, name: str, challenge: bytes) -> None:
        self._root, self._name, self._challenge = root, name, challenge

    def remote_respond(self, response: Any, mind: Any = None) -> Referenceable:
        return self._root.check(self._name, self._challenge, response)


async def serve(
    portal: Portal,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    pending: PendingLogins | None = None,
) -> None:
    """One connection to a port of registrations only: it must log in within
    :data:`LOGIN_TIMEOUT`, and then lasts until the client closes it."""
    address = writer.get_extra_info("peername")
    peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
    root = PortalRoot(portal, peer)
    broker = Broker(write=writer.transport.write, root=root, name=f"pb peer {peer}")
    if pending is None:
        pending = PendingLogins(portal.description)
    pending.add(writer, peer, broker)
    root.logged_in.add_done_callback(
        lambda f: None if f.cancelled() else pending.logged_in(writer, broker)
    )

    low_latency = LowLatency(writer)

    async def read() -> None:
        try:
            while data := await reader.read(256 * 1024):
                low_latency.after_read()
                broker.feed(data)
        except ProtocolError as exc:
            log.warning("pb_protocol_fault", peer=peer, fault=str(exc))
        except ConnectionError:
            pass

    read_task = asyncio.get_running_loop().create_task(read())
    try:
        broker.start()
        await asyncio.wait(
            {read_task, root.logged_in, root.refused},
            timeout=LOGIN_TIMEOUT,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if root.refused.done() and not root.logged_in.done():
            # one password guess per connection: the refusal was sent, then it ends
            broker.flush()
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), REFUSAL_FLUSH)
        elif root.logged_in.done():
            await read_task
        elif not read_task.done():
            log.warning("pb_login_refused", peer=peer, reason="no login in time")
    finally:
        read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await read_task
        pending.discard(writer)
        broker.close("connection closed")
        writer.transport.abort()


class _PortServer:
    def __init__(self, listen: Listen) -> None:
        self.listen = listen
        self.portal = Portal(f"PB port {listen.port}")
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.Task[Any]] = set()
        self.pending = PendingLogins(f"PB port {listen.port}")

    async def start(self) -> None:
        sock = bind(self.listen)
        self.server = await asyncio.start_server(self._client, sock=sock)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
        try:
            await serve(self.portal, reader, writer, self.pending)
        finally:
            if task is not None:
                self.connections.discard(task)

    @property
    def port(self) -> int | None:
        if self.server is None or not self.server.sockets:
            return None
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for task in list(self.connections):
            task.cancel()
        if self.connections:
            await asyncio.wait(set(self.connections))
        if server is not None:
            await server.wait_closed()


class PbPorts:
    """The master's PB portals: the worker port's, and those of ports of their own.

    ``worker_portal`` is consulted by the worker listener before its workers; ``worker_listen``
    is where that listener serves PB (None when ``c['protocols']`` has no ``pb``)."""

    def __init__(self) -> None:
        self.worker_portal = Portal("the worker PB port")
        self.worker_listen: Listen | None = None
        self._servers: dict[Listen, _PortServer] = {}

    async def register(self, listen: Listen | None, registration: Registration) -> Portal:
        """Register on ``listen`` (None: the worker PB port, which must be configured); a new
        port is bound and served at once (OSError if it cannot be). Returns the portal."""
        if listen is None:
            if self.worker_listen is None:
                raise PortalError(
                    f"{registration.owner}: no port given, and no worker PB port configured "
                    "(c['protocols']['pb'])"
                )
            listen = self.worker_listen
        worker = self.worker_listen
        # the worker port's number, however it is spelled (9989, 'tcp:9989:interface=...')
        if worker is not None and (
            listen == worker or (listen.port and listen.port == worker.port)
        ):
            self.worker_portal.register(registration)
            return self.worker_portal
        server = self._servers.get(listen)
        if server is None:
            server = _PortServer(listen)
            await server.start()
            self._servers[listen] = server
            log.info("pb_port_listening", host=listen.host or "*", port=server.port)
        server.portal.register(registration)
        return server.portal

    async def unregister(self, registration: Registration) -> None:
        self.worker_portal.unregister(registration)
        for listen, server in list(self._servers.items()):
            server.portal.unregister(registration)
            if not len(server.portal):
                del self._servers[listen]
                await server.stop()

    def port_of(self, portal: Portal) -> int | None:
        """The port number a portal of a port of its own is served on."""
        for server in self._servers.values():
            if server.portal is portal:
                return server.port
        return None

    async def stop(self) -> None:
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            await server.stop()


# -- the client's side ---------------------------------------------------------------------------


class PbClient:
    """A client connection that logged in (``buildyard sendchange``, ``buildyard try``): call
    methods of :attr:`perspective`, then :meth:`close`."""

    def __init__(
        self, broker: Broker, writer: asyncio.StreamWriter, read_task: asyncio.Task[None]
    ) -> None:
        self.broker, self._writer, self._read_task = broker, writer, read_task
        self.perspective: Any = None

    @classmethod
    async def login(cls, host: str, port: int, username: str, password: str) -> PbClient:
        """Connect, log in as Twisted cred's clients do; RemoteError with the master's
        failure (``twisted.cred.error.UnauthorizedLogin: ...``) when refused, OSError when
        the master cannot be reached; TimeoutError after :data:`LOGIN_TIMEOUT`."""
        reader, writer = await asyncio.open_connection(host, port)
        broker = Broker(
            write=writer.transport.write, root=None, name=f"{host}:{port}", server=False
        )

        async def read() -> None:
            try:
                while data := await reader.read(256 * 1024):
                    broker.feed(data)
            except (ProtocolError, ConnectionError):
                pass
            broker.close("the master closed the connection")

        client = cls(broker, writer, asyncio.get_running_loop().create_task(read()))
        ready = asyncio.ensure_future(broker.ready.wait())
        try:
            async with asyncio.timeout(LOGIN_TIMEOUT):
                await asyncio.wait({ready, client._read_task}, return_when=asyncio.FIRST_COMPLETED)
                if not ready.done():
                    raise ConnectionError(f"{host}:{port} closed the connection: is it a PB port?")
                answer = await broker.root().call("login", username.encode("utf-8"))
                if not (isinstance(answer, list | tuple) and len(answer) == 2):
                    raise ProtocolError(f"{host}:{port} answered login with {answer!r}")
                challenge, challenger = answer
                client.perspective = await challenger.call(
                    "respond", respond(password.encode("utf-8"), challenge), None
                )
        except BaseException:
            await client.close()
            raise
        finally:
            # a timeout or a closed connection leaves it waiting for ever otherwise
            ready.cancel()
        return client

    async def close(self) -> None:
        self.broker.flush()
        self.broker.close("closed by the client")
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self._read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._read_task

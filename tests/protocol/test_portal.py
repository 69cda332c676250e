"""PB logins routed by user name (buildyard.protocol.portal), our client against our server
on loopback: services sharing a port of their own, refusals, the port's life."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import structlog

from buildyard.common.ports import Listen
from buildyard.protocol import portal as portal_module
from buildyard.protocol.errors import ConnectionLost, RemoteError
from buildyard.protocol.pb import Broker, Referenceable
from buildyard.protocol.portal import PbClient, PbPorts, PortalError, Registration, respond
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import eventually

# a Twisted client's first bytes: its choice of dialect, then the PB version
HELLO = b"\x02\x82pb" + b"\x02\x80\x13\x87\x06\x81"


class Service(Referenceable):
    def __init__(self, label: str, peer: str) -> None:
        self.label, self.peer = label, peer

    def remote_whoami(self) -> str:
        return self.label


def _registration(owner: str, user: str, password: str) -> Registration:
    return Registration(
        owner=owner,
        username=user,
        password=password,
        perspective=lambda peer: Service(owner, peer),
    )


async def _whoami(port: int, user: str, password: str) -> Any:
    client = await PbClient.login("127.0.0.1", port, user, password)
    try:
        return await client.perspective.call("whoami")
    finally:
        await client.close()


async def test_two_services_share_a_port_of_their_own_by_user_name() -> None:
    ports = PbPorts()
    listen = Listen(host="127.0.0.1", port=free_port())
    changes = _registration("change source", "change", "changepw")
    tries = _registration("try", "alice", "wonderland")
    try:
        portal = await ports.register(listen, changes)
        assert await ports.register(listen, tries) is portal
        port = ports.port_of(portal)
        assert port == listen.port
        assert await _whoami(port, "change", "changepw") == "change source"
        assert await _whoami(port, "alice", "wonderland") == "try"
        for user, password in (("alice", "changepw"), ("bob", "wonderland")):
            with pytest.raises(RemoteError, match="UnauthorizedLogin"):
                await _whoami(port, user, password)
        # a user name is one service's on a port
        with pytest.raises(PortalError, match=r"'change' is already registered .* change source"):
            await ports.register(listen, _registration("another", "change", "x"))
        # the port stays while one service is on it, and closes with the last
        await ports.unregister(changes)
        assert await _whoami(port, "alice", "wonderland") == "try"
        with pytest.raises(RemoteError, match="UnauthorizedLogin"):
            await _whoami(port, "change", "changepw")
        await ports.unregister(tries)
        assert ports.port_of(portal) is None
        with pytest.raises(ConnectionRefusedError):
            await _whoami(port, "alice", "wonderland")
    finally:
        await ports.stop()


async def test_the_worker_port_must_be_configured_for_a_service_without_a_port() -> None:
    ports = PbPorts()
    with pytest.raises(PortalError, match="no worker PB port configured"):
        await ports.register(None, _registration("change source", "change", "changepw"))


async def test_the_worker_port_is_known_by_its_number_however_spelled() -> None:
    ports = PbPorts()
    ports.worker_listen = Listen(host="127.0.0.1", port=free_port())
    registration = _registration("change source", "change", "changepw")
    try:
        by_default = await ports.register(None, registration)
        assert by_default is ports.worker_portal
        await ports.unregister(registration)
        spelled = Listen(host=None, port=ports.worker_listen.port)
        assert await ports.register(spelled, registration) is ports.worker_portal
        assert ports.worker_portal.get("change") is registration
        assert ports.port_of(ports.worker_portal) is None  # no server of its own
    finally:
        await ports.stop()


async def test_a_port_of_its_own_refuses_floods_and_caps_pending_logins() -> None:
    ports = PbPorts()
    listen = Listen(host="127.0.0.1", port=free_port())
    try:
        portal = await ports.register(listen, _registration("change source", "change", "pw"))
        port = ports.port_of(portal)
        assert port is not None
        server = ports._servers[listen]
        with structlog.testing.capture_logs() as logs:
            # empty lists (one byte each) in a list that never closes, before any login
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            flooder = _local(writer)
            sent = 0
            with contextlib.suppress(ConnectionError):
                writer.write(HELLO + b"\x7f\x7f\x01\x80")
                while sent < 16 * 2**20:
                    writer.write(b"\x80" * 2**16)
                    await writer.drain()
                    sent += 2**16
            writer.transport.abort()
            assert sent < 16 * 2**20
            await eventually(lambda: not server.connections, within=30)
            # more not-logged-in connections than the cap: the longest-pending goes
            server.pending.cap = 2
            clients = []
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(HELLO)
                clients.append((reader, writer))
                await eventually(lambda: len(server.connections) == min(len(clients), 3), within=30)
            first = _local(clients[0][1])
            with contextlib.suppress(ConnectionError):
                while await clients[0][0].read(4096):
                    pass
            await eventually(lambda: len(server.connections) == 2, within=30)
            # a login still works, and leaves the pending set
            for _reader, writer in clients:
                writer.transport.abort()
            await eventually(lambda: not server.connections, within=30)
            assert await _whoami(port, "change", "pw") == "change source"
            assert len(server.pending) == 0
        faults = [e for e in logs if e["event"] == "pb_protocol_fault"]
        assert [e["peer"] for e in faults] == [flooder]
        assert "over the limit 1024" in faults[0]["fault"]
        refused = [e for e in logs if e.get("reason") == "over_max_pending"]
        assert [e["peer"] for e in refused] == [first]
    finally:
        await ports.stop()


def _local(writer: asyncio.StreamWriter) -> str:
    host, port = writer.get_extra_info("sockname")[:2]
    return f"{host}:{port}"


async def second_guess_is_refused(port: int, user: str) -> None:
    """A wrong password is answered with UnauthorizedLogin, and then the master closes the
    connection: a second guess on it cannot be made."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    broker = Broker(write=writer.transport.write, root=None, name="guesser", server=False)

    async def read() -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                broker.feed(data)
        broker.close("the master closed the connection")

    read_task = asyncio.get_running_loop().create_task(read())
    try:
        await broker.ready.wait()
        challenge, challenger = await broker.root().call("login", user.encode())
        with pytest.raises(RemoteError, match="UnauthorizedLogin"):
            await challenger.call("respond", respond(b"guess", challenge), None)
        await eventually(read_task.done, within=30)
        with pytest.raises(ConnectionLost):
            await broker.root().call("login", user.encode())
    finally:
        read_task.cancel()
        writer.transport.abort()


async def test_a_port_of_its_own_allows_one_password_guess_per_connection() -> None:
    ports = PbPorts()
    listen = Listen(host="127.0.0.1", port=free_port())
    try:
        portal = await ports.register(listen, _registration("change source", "change", "pw"))
        port = ports.port_of(portal)
        assert port is not None
        with structlog.testing.capture_logs() as logs:
            await second_guess_is_refused(port, "change")
            await second_guess_is_refused(port, "nobody")
        assert [e["reason"] for e in logs if e["event"] == "pb_login_refused"] == [
            "wrong password",
            "unknown user",
        ]
        assert await _whoami(port, "change", "pw") == "change source"
    finally:
        await ports.stop()


async def test_a_login_that_times_out_leaves_no_task_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a server that accepts and never speaks: the client gives up at LOGIN_TIMEOUT
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(portal_module, "LOGIN_TIMEOUT", 0.2)
    before = asyncio.all_tasks()
    try:
        with pytest.raises(TimeoutError):
            await PbClient.login("127.0.0.1", port, "u", "p")
        await asyncio.sleep(0)
        assert {t for t in asyncio.all_tasks() - before if not t.done()} == set()
    finally:
        for writer in accepted:
            writer.transport.abort()
        server.close()
        await server.wait_closed()

"""PB logins routed by user name (buildyard.protocol.portal), our client against our server
on loopback: services sharing a port of their own, refusals, the port's life."""

from __future__ import annotations

from typing import Any

import pytest

from buildyard.common.ports import Listen
from buildyard.protocol.errors import RemoteError
from buildyard.protocol.pb import Referenceable
from buildyard.protocol.portal import PbClient, PbPorts, PortalError, Registration
from buildyard.testing.postgres import free_port


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

"""``util.CommandlineUserManager``: what ``buildbot user`` / ``buildyard user`` talk to.

``c['user_managers'] = [util.CommandlineUserManager(username=..., passwd=..., port=...)]``
serves Perspective Broker on ``port`` (or shares the worker PB port when it is the same
address): a client that logs in with ``username`` / ``passwd`` may call
``commandline(op, bb_username, bb_password, ids, info)`` and gets back the text to print.

The operations, as Buildbot's manager does them on the ``users`` tables:

- ``add``, with ``info``: a list of ``{attr_type: attr_data, ..., "identifier": ident}`` maps;
  each attribute finds the user who has it or creates one named ``ident`` (a taken identifier
  gets a numeric suffix), and the others are set on that user;
- ``update``, with ``info`` naming existing users by ``identifier``: each attribute is set
  (``bb_username`` / ``bb_password``, when given, too); with no attribute only the web
  credentials are set;
- ``remove`` and ``get``, with ``ids``: the users of those identifiers.

``bb_password`` arrives hashed by the client (Buildbot's salted sha1: 16 hex digits of salt,
then the sha1 of the password and that salt), and is stored as it comes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from buildyard.common.errors import config_error
from buildyard.common.ports import Listen, parse_port
from buildyard.common.service import Service
from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.model.users import User
from buildyard.protocol.pb import CallFailed, Referenceable
from buildyard.protocol.portal import PbPorts, Registration

log = structlog.get_logger(__name__)

_LABEL = "CommandlineUserManager"
OPS = ("add", "update", "remove", "get")


class CommandlineUserManager:
    """Buildbot's ``util.CommandlineUserManager(username=None, passwd=None, port=None)``."""

    def __init__(self, username: Any = None, passwd: Any = None, port: Any = None) -> None:
        if not (isinstance(username, str) and username and isinstance(passwd, str) and passwd):
            config_error(
                f"{_LABEL}: a username and a password (strings) must be given to connect and "
                "use 'buildyard user'"
            )
        self.username = username if isinstance(username, str) else ""
        self.passwd = passwd if isinstance(passwd, str) else ""
        self.port = port
        self.listen: Listen | None = None
        if not port:
            config_error(f"{_LABEL}: a port must be given for its PB connection")
        else:
            try:
                self.listen = parse_port(port)
            except ValueError as exc:
                config_error(f"{_LABEL}: {exc}")

    def __repr__(self) -> str:
        return f"CommandlineUserManager(username={self.username!r}, port={self.port!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CommandlineUserManager) and (
            self.username,
            self.passwd,
            self.listen,
        ) == (other.username, other.passwd, other.listen)

    __hash__ = None  # type: ignore[assignment]


class UserManagers(Service):
    """The running ``CommandlineUserManager`` registrations; :meth:`apply` makes them match a
    configuration (entries of other kinds are warned about by the config loader)."""

    def __init__(self, *, db: Database, updates: Updates, pb_ports: PbPorts) -> None:
        super().__init__("user_managers")
        self._db, self._updates, self._pb_ports = db, updates, pb_ports
        self._registrations: list[Registration] = []
        self._running: list[CommandlineUserManager] = []

    async def apply(self, managers: Sequence[object]) -> None:
        wanted = [m for m in managers if isinstance(m, CommandlineUserManager)]
        if wanted == self._running:
            return
        await self._unregister()
        for manager in wanted:
            registration = Registration(
                owner=f"user manager on port {manager.port!r}",
                username=manager.username,
                password=manager.passwd,
                perspective=lambda peer: UsersPerspective(self, peer),
            )
            await self._pb_ports.register(manager.listen, registration)
            self._registrations.append(registration)
            log.info("user_manager_listening", port=manager.port)
        self._running = wanted

    async def _unregister(self) -> None:
        registrations, self._registrations, self._running = self._registrations, [], []
        for registration in registrations:
            await self._pb_ports.unregister(registration)

    async def stop_service(self) -> None:
        await self._unregister()
        await super().stop_service()

    async def commandline(
        self,
        op: str,
        bb_username: str | None,
        bb_password: str | None,
        ids: Sequence[str] | None,
        info: Sequence[dict[str, str]] | None,
    ) -> str:
        """Run one ``buildyard user`` request; the text to print."""
        if op not in OPS:
            raise CallFailed(f"commandline: op must be one of {', '.join(OPS)}, not {op!r}")
        if ids:
            return await self._by_ids(op, list(ids))
        lines: list[str] = []
        for entry in info or ():
            if not isinstance(entry, dict) or not isinstance(entry.get("identifier"), str):
                raise CallFailed("commandline: each info entry must be a dict with an identifier")
            attrs = {str(k): str(v) for k, v in entry.items() if k != "identifier"}
            ident = entry["identifier"]
            found = await self._db.users.find_user_by_identifier(ident)
            uid = found.uid if found is not None else None
            if not attrs:  # only the web credentials
                if uid is None:
                    log.info("user_not_found", identifier=ident)
                    continue
                await self._updates.update_user(
                    uid, identifier=ident, bb_username=bb_username, bb_password=bb_password
                )
                lines.append(f"identifier: {ident}")
                continue
            first = op == "add"
            for attr_type, attr_data in attrs.items():
                if first:  # the user with this attribute, or a new one
                    uid = await self._updates.find_user_id_by_attr(ident, attr_type, attr_data)
                    lines += [f"identifier: {ident}", f"uid: {uid}", ""]
                    first = False
                    continue
                if uid is None:
                    log.info("user_not_found", identifier=ident)
                    continue
                await self._updates.update_user(
                    uid,
                    identifier=ident,
                    bb_username=bb_username,
                    bb_password=bb_password,
                    attr_type=attr_type,
                    attr_data=attr_data,
                )
                lines.append(f"identifier: {ident}")
        heading = "user(s) added:" if op == "add" else "user(s) updated:"
        return "\n".join([heading, *lines]) + "\n"

    async def _by_ids(self, op: str, ids: list[str]) -> str:
        if op not in ("remove", "get"):
            raise CallFailed(f"commandline: ids go with remove and get, not {op!r}")
        out = ["user(s) removed:" if op == "remove" else "user(s) found:"]
        for ident in ids:
            user = await self._db.users.find_user_by_identifier(ident)
            if user is None:
                log.info("user_not_found", identifier=ident)
                if op == "get":
                    out.append("no match found")
                continue
            if op == "remove":
                await self._updates.remove_user(user.uid)
                out.append(f"identifier: {ident}")
            else:
                out += _describe(user)
        return "\n".join(out) + "\n"


def _describe(user: User) -> list[str]:
    lines = [
        f"uid: {user.uid}",
        f"identifier: {user.identifier}",
        f"bb_username: {user.bb_username}",
    ]
    if user.attributes:
        lines.append("attributes:")
        lines += [f"\t{k}: {v}" for k, v in user.attributes.items()]
        lines.append("")
    return lines


def text(value: Any) -> Any:
    """A byte string sent by a client, as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class UsersPerspective(Referenceable):
    """What a logged-in ``buildyard user`` client may call (Buildbot's
    ``perspective_commandline``)."""

    def __init__(self, managers: UserManagers, peer: str) -> None:
        self._managers, self._peer = managers, peer

    async def remote_commandline(
        self, op: Any, bb_username: Any, bb_password: Any, ids: Any, info: Any
    ) -> str:
        log.info("user_commandline", peer=self._peer, op=text(op))
        return await self._managers.commandline(
            text(op),
            text(bb_username),
            text(bb_password),
            [text(i) for i in ids] if ids else None,
            [{text(k): text(v) for k, v in e.items()} for e in info] if info else None,
        )

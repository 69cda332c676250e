"""What every change source is made of: its master.cfg object and the service that runs it.

A change source in master.cfg (``changes.GitPoller(...)``) is a :class:`ChangeSourceConfig`:
a comparable configuration value. The change manager turns it into a running
:class:`ChangeSource` service with :meth:`ChangeSourceConfig.make_service`, giving it the
:class:`ChangeSourceContext` (the data API's writer, the clock, this master's id and basedir).
A change source runs on one master at a time: the service claims it in the database before its
first poll and retries the claim every ``claim_interval`` seconds while another master holds it
(and at once when a master stops or is expired).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from buildyard.common.clock import Clock
from buildyard.common.config_object import ConfigObject
from buildyard.common.service import ConfiguredService
from buildyard.master.data.claims import claim_until_held
from buildyard.master.data.updates import Updates
from buildyard.master.mq.base import MessageQueue
from buildyard.protocol.portal import PbPorts

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class ChangeSourceContext:
    updates: Updates
    clock: Clock
    # this master's id, known once the master started
    masterid: Callable[[], int]
    # the master's base directory (pollers keep their work repositories under it)
    basedir: Path
    # the value of a secret from c['secretsProviders'] (None: unknown), for the renderables a
    # change source takes (a GitPoller's ssh key, ...)
    secret: Callable[[str], Awaitable[str | None]] | None = None
    # the master's PB ports (PBChangeSource logs its user in there); None: no PB here
    pb_ports: PbPorts | None = None
    # the message queue: a change source held elsewhere is claimed again at once when a master
    # stops (None: only every claim_interval)
    mq: MessageQueue | None = None


class ChangeSourceConfig(ConfigObject):
    """Base of the change sources master.cfg builds; subclasses set ``name``."""

    name: str

    def make_service(self, name: str, ctx: ChangeSourceContext) -> ChangeSource:
        raise NotImplementedError(f"{type(self).__name__}.make_service")


class ChangeSource(ConfiguredService[Any]):
    """A running change source. Subclasses implement :meth:`activate` (start polling,
    listening...); it runs once this master holds the change source."""

    claim_interval = 60.0

    def __init__(self, name: str, config: Any, ctx: ChangeSourceContext) -> None:
        super().__init__(name, config)
        self.ctx = ctx
        self.changesourceid: int | None = None
        self.active = False

    async def start_service(self) -> None:
        self.changesourceid = await self.ctx.updates.find_changesource_id(self.name)
        _ = self.spawn(self._claim_then_activate(), name="claim")

    async def _claim_then_activate(self) -> None:
        assert self.changesourceid is not None
        changesourceid = self.changesourceid
        await claim_until_held(
            lambda: self.ctx.updates.claim_changesource(
                changesourceid, masterid=self.ctx.masterid()
            ),
            mq=self.ctx.mq,
            clock=self.ctx.clock,
            interval=self.claim_interval,
            refused=lambda: log.info("changesource_held_elsewhere", changesource=self.name),
            held=self._held,
        )
        await self.activate()

    def _held(self) -> None:
        self.active = True  # claimed: a stop from now on releases it

    async def activate(self) -> None:
        """This master runs the change source now: start its work (in tasks of its own)."""

    async def stop_service(self) -> None:
        if self.active and self.changesourceid is not None:
            await self.ctx.updates.release_changesource(self.changesourceid)
            self.active = False

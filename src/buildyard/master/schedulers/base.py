"""What every scheduler is made of: its master.cfg object and the service that runs it.

A scheduler in master.cfg (``schedulers.SingleBranchScheduler(...)``) is a
:class:`SchedulerConfig`: a comparable configuration value. The scheduler manager turns it into
a running :class:`Scheduler` service with :meth:`SchedulerConfig.make_service`, giving it the
:class:`SchedulerContext`. A scheduler runs on one master at a time: the service claims it in the
database, retrying every ``claim_interval`` seconds while another master holds it (and at once
when a master stops or is expired, so a dead master's schedulers move on), and then
:meth:`Scheduler.activate` starts its work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from buildyard.common.clock import Clock
from buildyard.common.config_object import ConfigObject
from buildyard.common.service import ConfiguredService
from buildyard.master.data.claims import claim_until_held
from buildyard.master.data.queries import Queries
from buildyard.master.data.updates import Updates
from buildyard.master.mq.base import MessageQueue
from buildyard.protocol.portal import PbPorts

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class SchedulerContext:
    updates: Updates
    mq: MessageQueue
    clock: Clock
    # this master's id, known once the master started
    masterid: Callable[[], int]
    # the reads no event carries (classified changes, builder ids); None until the master wires it
    queries: Queries | None = None
    # the master's PB ports (Try_Userpass logs its users in there); None: no PB here
    pb_ports: PbPorts | None = None
    # the master's base directory (Try_Jobdir's jobdir is relative to it)
    basedir: Path | None = None


class SchedulerConfig(ConfigObject):
    """Base of the schedulers master.cfg builds; subclasses set ``name`` and
    ``builderNames``."""

    name: str

    def make_service(self, name: str, ctx: SchedulerContext) -> Scheduler:
        raise NotImplementedError(f"{type(self).__name__}.make_service")


class Scheduler(ConfiguredService[Any]):
    claim_interval = 60.0

    def __init__(self, name: str, config: Any, ctx: SchedulerContext) -> None:
        super().__init__(name, config)
        self.ctx = ctx
        self.schedulerid: int | None = None
        self.active = False

    async def start_service(self) -> None:
        self.schedulerid = await self.ctx.updates.find_scheduler_id(self.name)
        _ = self.spawn(self._claim_then_activate(), name="claim")

    async def _claim_then_activate(self) -> None:
        assert self.schedulerid is not None
        schedulerid = self.schedulerid
        await claim_until_held(
            lambda: self.ctx.updates.claim_scheduler(schedulerid, masterid=self.ctx.masterid()),
            mq=self.ctx.mq,
            clock=self.ctx.clock,
            interval=self.claim_interval,
            refused=lambda: log.info("scheduler_held_elsewhere", scheduler=self.name),
            held=self._held,
        )
        await self.activate()

    def _held(self) -> None:
        self.active = True  # claimed: a stop from now on releases it

    async def activate(self) -> None:
        """This master runs the scheduler now: start its work (in tasks of its own)."""

    async def stop_service(self) -> None:
        if self.active and self.schedulerid is not None:
            await self.ctx.updates.release_scheduler(self.schedulerid)
            self.active = False

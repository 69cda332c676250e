"""Masters' heartbeat: check this master in, and expire masters that stopped checking in.

Every ``interval`` seconds the master marks itself active (refreshing ``last_active``), then
marks inactive every master silent for more than ``expire_after`` seconds, undoing what it held
(builder, scheduler and change-source links, unfinished builds, claimed requests).

``c['changeHorizon']``: as the master starts and every :data:`PRUNE_INTERVAL` seconds after,
all but the newest ``changeHorizon`` changes are deleted (as Buildbot's hourly database
cleanup does), a bounded batch per transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from buildyard.common.clock import Clock
from buildyard.common.service import Service
from buildyard.master.data.updates import Updates

log = structlog.get_logger(__name__)

#: seconds between two prunings of old changes (Buildbot's database cleanup period)
PRUNE_INTERVAL = 3600.0


class Housekeeping(Service):
    def __init__(
        self,
        *,
        updates: Updates,
        clock: Clock,
        interval: float,
        expire_after: float,
        on_reactivated: Callable[[], Awaitable[None]] | None = None,
        change_horizon: int | None = None,
    ) -> None:
        super().__init__("housekeeping")
        # called when a check-in finds this master marked inactive (another master expired
        # it while it was stalled): its builder links are gone and must be made again
        self._on_reactivated = on_reactivated
        self._updates = updates
        self._clock = clock
        self.interval = interval
        self.expire_after = expire_after
        self.change_horizon = change_horizon
        self.pruned = 0
        self._pruning = False
        self.masterid: int | None = None
        self.master_name = ""
        self.checkins = 0

    def configure(
        self, *, interval: float, expire_after: float, change_horizon: int | None = None
    ) -> None:
        self.interval, self.expire_after = interval, expire_after
        self.change_horizon = change_horizon
        if self.masterid is not None:
            self._start_pruning()

    def begin(self, *, masterid: int, name: str) -> None:
        """Start the loop for this master (after it has checked in once)."""
        self.masterid, self.master_name = masterid, name
        _ = self.spawn(self._loop(), name="heartbeat")
        self._start_pruning()

    def _start_pruning(self) -> None:
        """The pruning loop, once there is a horizon (a reconfig may set one later)."""
        if self.change_horizon and not self._pruning:
            self._pruning = True
            _ = self.spawn(self._prune_loop(), name="prune-changes")

    async def prune_changes(self) -> int:
        """Delete the changes beyond ``c['changeHorizon']``; how many went."""
        if not self.change_horizon:
            return 0
        gone = await self._updates.prune_changes(self.change_horizon)
        self.pruned += gone
        if gone:
            log.info("changes_pruned", deleted=gone, horizon=self.change_horizon)
        return gone

    async def _prune_loop(self) -> None:
        while True:
            try:
                await self.prune_changes()
            except Exception:
                log.exception("change_pruning_failed", masterid=self.masterid)
            await self._clock.sleep(PRUNE_INTERVAL)

    async def check_in(self) -> list[int]:
        assert self.masterid is not None
        if (
            await self._updates.master_active(name=self.master_name, masterid=self.masterid)
            and self._on_reactivated is not None
        ):
            log.warning("master_reactivated", masterid=self.masterid)
            await self._on_reactivated()
        expired = await self._updates.expire_masters(expire_after=self.expire_after)
        self.checkins += 1  # completed ones
        return expired

    async def _loop(self) -> None:
        while True:
            await self._clock.sleep(self.interval)
            try:
                await self.check_in()
            except Exception:
                # a lost database connection must not end the heartbeat: try again next time
                log.exception("master_checkin_failed", masterid=self.masterid)

    def statistics(self) -> dict[str, int]:
        return {**super().statistics(), "checkins": self.checkins, "changes_pruned": self.pruned}

"""A scheduler held by another master: this master claims it once that master stops (or is
expired), woken by ``masters/<id>/stopped`` rather than by its next periodic attempt."""

from __future__ import annotations

from buildyard.master.data.updates import Updates
from buildyard.master.schedulers.base import SchedulerContext
from buildyard.master.schedulers.forced import ForceScheduler
from buildyard.testing.clock import FakeClock
from buildyard.testing.processes import eventually


async def test_a_waiting_scheduler_claims_when_the_holder_stops(
    ctx: SchedulerContext, updates: Updates, clock: FakeClock
) -> None:
    other = await updates.find_master_id("master-2")
    await updates.master_active(name="master-2", masterid=other)
    schedulerid = await updates.find_scheduler_id("force")
    assert await updates.claim_scheduler(schedulerid, masterid=other)
    service = ForceScheduler("force", ["b1"]).make_service("force", ctx)
    await service.start()
    try:
        # refused once, now waiting for the next attempt (a minute away on the clock)
        await eventually(lambda: clock.sleepers == 1, within=10)
        assert not service.active
        # master-2 stops: it releases the scheduler and announces it; the clock stays put
        await updates.master_stopped(name="master-2", masterid=other)
        await eventually(lambda: service.active, within=10)
        assert clock.monotonic() == 0
    finally:
        await service.stop()


async def test_without_a_stop_the_scheduler_tries_again_every_claim_interval(
    ctx: SchedulerContext, updates: Updates, clock: FakeClock
) -> None:
    other = await updates.find_master_id("master-2")
    schedulerid = await updates.find_scheduler_id("force")
    assert await updates.claim_scheduler(schedulerid, masterid=other)
    service = ForceScheduler("force", ["b1"]).make_service("force", ctx)
    await service.start()
    try:
        await eventually(lambda: clock.sleepers == 1, within=10)
        await updates.release_scheduler(schedulerid)  # released with no event
        clock.advance(service.claim_interval)
        await eventually(lambda: service.active, within=10)
    finally:
        await service.stop()

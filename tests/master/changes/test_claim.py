"""A change source held by another master: claimed as soon as that master stops (its
``masters/<id>/stopped`` event), not at the next periodic attempt; without a queue in the
context, only periodically."""

from __future__ import annotations

import dataclasses

from buildyard.master.changes.base import ChangeSource, ChangeSourceContext
from buildyard.master.data.updates import Updates
from buildyard.master.mq.local import LocalMQ
from buildyard.testing.clock import FakeClock
from buildyard.testing.processes import eventually


async def _held_elsewhere(updates: Updates) -> int:
    other = await updates.find_master_id("master-2")
    await updates.master_active(name="master-2", masterid=other)
    sourceid = await updates.find_changesource_id("poller")
    assert await updates.claim_changesource(sourceid, masterid=other)
    return other


async def test_claimed_when_the_holder_stops(
    ctx: ChangeSourceContext, updates: Updates, clock: FakeClock, mq: LocalMQ
) -> None:
    other = await _held_elsewhere(updates)
    source = ChangeSource("poller", None, dataclasses.replace(ctx, mq=mq))
    await source.start()
    try:
        await eventually(lambda: clock.sleepers == 1, within=10)
        assert not source.active
        await updates.master_stopped(name="master-2", masterid=other)
        await eventually(lambda: source.active, within=10)
        assert clock.monotonic() == 0
    finally:
        await source.stop()


async def test_without_a_queue_only_every_claim_interval(
    ctx: ChangeSourceContext, updates: Updates, clock: FakeClock
) -> None:
    other = await _held_elsewhere(updates)
    source = ChangeSource("poller", None, ctx)
    await source.start()
    try:
        await eventually(lambda: clock.sleepers == 1, within=10)
        await updates.master_stopped(name="master-2", masterid=other)
        assert not source.active  # it sleeps on the clock
        clock.advance(source.claim_interval)
        await eventually(lambda: source.active, within=10)
    finally:
        await source.stop()

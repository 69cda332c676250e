"""The heartbeat: check in every interval, expire others silent for longer than expire_after."""

from __future__ import annotations

from buildyard.master.data.housekeeping import Housekeeping
from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.testing.clock import FakeClock
from buildyard.testing.processes import eventually


async def test_heartbeat_checks_in_and_expires_a_silent_master(
    updates: Updates, database: Database, clock: FakeClock
) -> None:
    me = await updates.find_master_id("me")
    other = await updates.find_master_id("other")
    await updates.master_active(name="me", masterid=me)
    await updates.master_active(name="other", masterid=other)
    hk = Housekeeping(updates=updates, clock=clock, interval=10, expire_after=30)
    await hk.start()
    hk.begin(masterid=me, name="me")
    try:
        for n in range(1, 5):
            await eventually(lambda: clock.sleepers == 1, within=10)
            clock.advance(10)
            await eventually(lambda n=n: hk.checkins == n, within=10)  # type: ignore[misc]
        # 40 s without a check-in from "other": it is gone; "me" checked in 0 s ago
        mine = await database.masters.get_master(me)
        theirs = await database.masters.get_master(other)
        assert mine is not None and mine.active and mine.last_active == int(clock.now())
        assert theirs is not None and not theirs.active
    finally:
        await hk.stop()
    assert hk.statistics()["tasks"] == 0


async def test_heartbeat_survives_a_failed_check_in(
    updates: Updates, database: Database, clock: FakeClock
) -> None:
    me = await updates.find_master_id("me")
    hk = Housekeeping(updates=updates, clock=clock, interval=5, expire_after=60)
    await hk.start()
    hk.begin(masterid=me, name="me")
    try:
        real = updates.master_active
        calls = 0

        async def flaky(*, name: str, masterid: int) -> bool:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ConnectionError("database went away")
            return await real(name=name, masterid=masterid)

        updates.master_active = flaky  # type: ignore[method-assign]
        await eventually(lambda: clock.sleepers == 1, within=10)
        clock.advance(5)
        await eventually(lambda: calls == 1 and clock.sleepers == 1, within=10)
        clock.advance(5)
        await eventually(lambda: hk.checkins == 1, within=10)
        assert hk.running and hk.statistics()["tasks"] == 1
    finally:
        await hk.stop()

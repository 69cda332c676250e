"""Periodic and Nightly on a FakeClock: when they fire, what they build, onlyIfChanged, and
restarts that neither fire twice nor forget a missed time."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from buildyard.common.errors import ConfigError
from buildyard.master.data.updates import Updates
from buildyard.master.model.results import Results
from buildyard.master.schedulers.base import SchedulerContext
from buildyard.master.schedulers.timed import Nightly, NightlyTriggerable, Periodic, TimedScheduler
from buildyard.testing.clock import FakeClock
from buildyard.testing.processes import eventually
from tests.master.schedulers.conftest import AddChange, Buildsets, running, settle

# FakeClock starts at 2023-11-14 22:13:20 UTC
START = 1_700_000_000.0
HALF_PAST = 1_700_001_000.0  # 22:30:00
ELEVEN = 1_700_002_800.0  # 23:00:00


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fire times in UTC, whatever the machine's time zone."""
    monkeypatch.setattr(TimedScheduler, "tz", datetime.UTC)


async def armed(sched: TimedScheduler, clock: FakeClock, last: float | None) -> None:
    """The scheduler fired last at ``last`` (None: never) and waits for its next time."""
    await eventually(
        lambda: sched.last_actuated == last and not sched.lock.locked() and clock.sleepers == 1,
        within=10,
    )


async def test_periodic_fires_at_once_then_every_period(
    ctx: SchedulerContext, clock: FakeClock, buildsets: Buildsets, updates: Updates
) -> None:
    config = Periodic("hourly", ["b1"], periodicBuildTimer=600, properties={"kind": "periodic"})
    async with running(config, ctx) as sched:
        first = await buildsets.next()
        await armed(sched, clock, START)
        assert sched.next_build_at == START + 600
        clock.advance(599)
        await armed(sched, clock, START)
        assert buildsets.pending() == 0
        clock.advance(1)
        second = await buildsets.next()
        await armed(sched, clock, START + 600)
        objectid = await updates.get_object_id("hourly", "Periodic")
        assert await updates.get_state(objectid, "last_build") == START + 600
    assert first.reason == "The Periodic scheduler named 'hourly' triggered this build"
    assert first.properties == {
        "kind": ("periodic", "Scheduler"),
        "scheduler": ("hourly", "Scheduler"),
    }
    assert first.stamps == [("", None, None, "", "")] and first.builders == ["b1"]
    assert second.changeids == []


async def test_a_restart_does_not_fire_again_for_a_time_already_fired(
    ctx: SchedulerContext, clock: FakeClock, buildsets: Buildsets
) -> None:
    config = Periodic("p", ["b1"], periodicBuildTimer=600)
    async with running(config, ctx) as sched:
        await buildsets.next()
        await armed(sched, clock, START)
    clock.advance(100)
    async with running(config, ctx) as sched:
        await armed(sched, clock, START)
        assert sched.next_build_at == START + 600
        assert buildsets.pending() == 0
        clock.advance(500)
        await buildsets.next()
        await armed(sched, clock, START + 600)


async def test_a_time_missed_while_down_fires_once_at_start(
    ctx: SchedulerContext, clock: FakeClock, buildsets: Buildsets
) -> None:
    config = Periodic("p", ["b1"], periodicBuildTimer=600)
    async with running(config, ctx) as sched:
        await buildsets.next()
        await armed(sched, clock, START)
    clock.advance(2000)  # three periods go by while the master is down
    async with running(config, ctx) as sched:
        await buildsets.next()
        await armed(sched, clock, START + 2000)
        assert buildsets.pending() == 0
        assert sched.next_build_at == START + 2600


async def test_nightly_fires_at_its_times(
    ctx: SchedulerContext, clock: FakeClock, buildsets: Buildsets
) -> None:
    config = Nightly("n", ["b1", "b2"], minute=[0, 30], codebases={"app": {"branch": "main"}})
    async with running(config, ctx) as sched:
        await armed(sched, clock, None)
        assert sched.next_build_at == HALF_PAST
        clock.advance(HALF_PAST - START)
        seen = await buildsets.next()
        await armed(sched, clock, HALF_PAST)
        assert sched.next_build_at == ELEVEN
    assert seen.reason == "The Nightly scheduler named 'n' triggered this build"
    assert seen.builders == ["b1", "b2"]
    assert seen.stamps == [("app", "main", None, "", "")]


async def test_nightly_restart_keeps_its_last_build_time(
    ctx: SchedulerContext, clock: FakeClock, buildsets: Buildsets
) -> None:
    config = Nightly("n", ["b1"], minute=[0, 30])
    async with running(config, ctx) as sched:
        await armed(sched, clock, None)
        clock.advance(HALF_PAST - START)
        await buildsets.next()
        await armed(sched, clock, HALF_PAST)
    async with running(config, ctx) as sched:
        await armed(sched, clock, HALF_PAST)
        assert sched.next_build_at == ELEVEN
        assert buildsets.pending() == 0


async def test_nightly_triggerable_builds_the_last_trigger_at_its_time(
    ctx: SchedulerContext, clock: FakeClock, buildsets: Buildsets, updates: Updates
) -> None:
    config = NightlyTriggerable("nt", ["b1"], minute=[0, 30], properties={"mine": 1})
    stamp = {"codebase": "", "branch": "main", "revision": "abc", "repository": "r", "project": ""}
    async with running(config, ctx) as sched:
        await armed(sched, clock, None)
        # not triggered: its time passes without a build
        clock.advance(HALF_PAST - START)
        await armed(sched, clock, HALF_PAST)
        assert buildsets.pending() == 0
        # triggered twice: the later trigger is the one built; the Trigger step is done at once
        ids, result = await sched.trigger(waited_for=True, sourcestamps=[stamp])
        assert ids is None and result.result() == Results.SUCCESS
        later = {**stamp, "revision": "def"}
        await sched.trigger(
            waited_for=True,
            sourcestamps=[later],
            set_props={"word": ("hi", "Trigger")},
            parent_buildid=None,
            parent_relationship="Triggered from",
        )
    # the trigger outlives a restart
    async with running(config, ctx) as sched:
        await armed(sched, clock, HALF_PAST)
        clock.advance(ELEVEN - HALF_PAST)
        seen = await buildsets.next()
        await armed(sched, clock, ELEVEN)
        objectid = await updates.get_object_id("nt", "NightlyTriggerable")
        assert await updates.get_state(objectid, "lastTrigger") is None
        # built once: the next time has nothing to build
        clock.advance(1800)
        await armed(sched, clock, ELEVEN + 1800)
        assert buildsets.pending() == 0
    assert seen.reason == "The NightlyTriggerable scheduler named 'nt' triggered this build"
    assert seen.stamps == [("", "main", "def", "r", "")]
    assert seen.properties["word"] == ("hi", "Trigger")
    assert seen.properties["mine"] == (1, "Scheduler")


async def test_only_if_changed_builds_the_first_time_then_only_on_changes(
    ctx: SchedulerContext,
    clock: FakeClock,
    buildsets: Buildsets,
    add_change: AddChange,
) -> None:
    config = Periodic(
        "p",
        ["b1"],
        periodicBuildTimer=100,
        onlyIfChanged=True,
        fileIsImportant=lambda c: c.files != ["README"],
    )
    async with running(config, ctx) as sched:
        first = await buildsets.next()  # a new scheduler builds once to set a baseline
        await armed(sched, clock, START)
        await add_change(files=["README"])
        await settle(sched)
        clock.advance(100)
        await armed(sched, clock, START + 100)
        assert buildsets.pending() == 0  # only an unimportant change: skipped
        wanted = await add_change(files=["x.c"], revision="r9")
        await settle(sched)
        clock.advance(100)
        built = await buildsets.next()
        await armed(sched, clock, START + 200)
        clock.advance(100)
        await armed(sched, clock, START + 300)
        assert buildsets.pending() == 0
    assert first.changeids == []
    assert built.changeids == [wanted]
    assert built.stamps == [("", None, "r9", "", "")]


async def test_the_branch_argument_limits_the_changes_watched(
    ctx: SchedulerContext,
    clock: FakeClock,
    buildsets: Buildsets,
    add_change: AddChange,
    database: Any,
) -> None:
    config = Periodic("p", ["b1"], periodicBuildTimer=100, onlyIfChanged=True, branch="main")
    async with running(config, ctx) as sched:
        await buildsets.next()
        await armed(sched, clock, START)
        await add_change(branch="dev")
        main = await add_change(branch="main")
        await settle(sched)
        assert sched.schedulerid is not None
        assert await database.schedulers.get_change_classifications(sched.schedulerid) == {
            main: True
        }


async def test_force_at_builds_without_changes(
    ctx: SchedulerContext, clock: FakeClock, buildsets: Buildsets
) -> None:
    config = Nightly("n", ["b1"], minute=[0, 30], onlyIfChanged=True, force_at_minute=0)
    async with running(config, ctx) as sched:
        await armed(sched, clock, None)
        clock.advance(HALF_PAST - START)
        await buildsets.next()  # the first build of a new scheduler
        await armed(sched, clock, HALF_PAST)
        clock.advance(ELEVEN - HALF_PAST)
        await buildsets.next()  # 23:00 is a force_at time
        await armed(sched, clock, ELEVEN)
        clock.advance(1800)
        await armed(sched, clock, ELEVEN + 1800)
        assert buildsets.pending() == 0  # 23:30 is not


async def test_disabling_stops_the_timer(
    ctx: SchedulerContext, clock: FakeClock, buildsets: Buildsets, updates: Updates
) -> None:
    config = Periodic("p", ["b1"], periodicBuildTimer=100)
    async with running(config, ctx) as sched:
        await buildsets.next()
        await armed(sched, clock, START)
        assert sched.schedulerid is not None
        await updates.set_scheduler_enabled(sched.schedulerid, False)
        await eventually(lambda: clock.sleepers == 0 and sched.next_build_at is None, within=10)
        clock.advance(500)
        await updates.set_scheduler_enabled(sched.schedulerid, True)
        await buildsets.next()  # the missed time, once
        await armed(sched, clock, START + 500)
        assert buildsets.pending() == 0


def bad(value: object) -> Any:
    """A value of the wrong type, as a master.cfg may pass."""
    return value


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Periodic("p", ["b"]), "periodicBuildTimer (seconds) is required"),
        (lambda: Periodic("p", ["b"], periodicBuildTimer=0), "periodicBuildTimer must be positive"),
        (
            lambda: Periodic("p", ["b"], periodicBuildTimer=bad("1h")),
            "periodicBuildTimer must be a number of seconds",
        ),
        (lambda: Nightly("n", ["b"], hour=24), "hour '24': 24 in '24' is out of range 0-23"),
        (lambda: Nightly("n", ["b"], reason="%(when)s"), "can only use %(name)s"),
        (lambda: Nightly("n", "b"), "builderNames must be a list of builder names"),
        (lambda: Nightly("n", ["b"], force_at_hour=99), "force_at_* arguments: hour '99'"),
    ],
)
def test_bad_arguments_are_config_errors(build: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert message in info.value.message


def test_buildbot_defaults() -> None:
    n = Nightly("n", ["b"])
    assert n.rule is not None and n.rule.minutes == frozenset({0}) and len(n.rule.hours) == 24
    assert n.force_rule is None
    assert Periodic("p", ["b"], periodicBuildTimer=5).reason == (
        "The Periodic scheduler named 'p' triggered this build"
    )
    assert type(n).state_class_name() == "Nightly"

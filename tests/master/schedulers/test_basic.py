"""SingleBranchScheduler and AnyBranchScheduler: filtering, importance, tree-stable timers, the
buildsets they add, restarts and the enabled flag."""

from __future__ import annotations

from typing import Any

import pytest

from buildyard.common.errors import ConfigError
from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.model.properties import Interpolate, renderer
from buildyard.master.schedulers.arguments import SchedulerBase
from buildyard.master.schedulers.base import SchedulerContext
from buildyard.master.schedulers.basic import AnyBranchScheduler, SingleBranchScheduler
from buildyard.master.schedulers.changefilter import ChangeFilter
from buildyard.testing.clock import FakeClock
from buildyard.testing.processes import eventually
from tests.master.schedulers.conftest import AddChange, Buildsets, running, settle


def single(**kw: Any) -> SingleBranchScheduler:
    args: dict[str, Any] = {"name": "sbs", "builderNames": ["b1", "b2"], "branch": "main"}
    args.update(kw)
    return SingleBranchScheduler(**args)


async def test_each_important_change_builds_at_once_without_a_timer(
    ctx: SchedulerContext, add_change: AddChange, buildsets: Buildsets
) -> None:
    async with running(single(properties={"from_sched": 1}), ctx) as sched:
        first = await add_change(branch="main", revision="r1", properties={"p": ("v", "Change")})
        second = await add_change(branch="main", revision="r2")
        await add_change(branch="other", revision="r3")
        await settle(sched)
        a, b = await buildsets.next(), await buildsets.next()
        assert buildsets.pending() == 0
    assert a.reason == "The SingleBranchScheduler scheduler named 'sbs' triggered this build"
    assert a.builders == ["b1", "b2"]
    assert a.changeids == [first] and b.changeids == [second]
    assert a.stamps == [("", "main", "r1", "", "")]
    assert a.properties == {
        "from_sched": (1, "Scheduler"),
        "scheduler": ("sbs", "Scheduler"),
        "p": ("v", "Change"),
    }
    assert b.properties == {"from_sched": (1, "Scheduler"), "scheduler": ("sbs", "Scheduler")}


async def test_unimportant_changes_are_ignored_without_a_timer(
    ctx: SchedulerContext, add_change: AddChange, buildsets: Buildsets
) -> None:
    def important(change: Any) -> bool:
        return any(f.endswith(".c") for f in change.files)

    async with running(single(fileIsImportant=important), ctx) as sched:
        await add_change(branch="main", files=["README"])
        wanted = await add_change(branch="main", files=["x.c"])
        await settle(sched)
        assert (await buildsets.next()).changeids == [wanted]
        assert buildsets.pending() == 0


async def test_tree_stable_timer_waits_until_quiet_and_builds_every_classified_change(
    ctx: SchedulerContext,
    clock: FakeClock,
    add_change: AddChange,
    buildsets: Buildsets,
    database: Database,
) -> None:
    """An important change starts the timer, an unimportant one restarts a running timer (and
    alone starts none); the buildset gets every classified change, then they are forgotten."""
    seen_changes: list[list[int]] = []

    def priority(builder_names: list[str], changes: dict[str, list[Any]]) -> int:
        seen_changes.append(sorted(c.number for cs in changes.values() for c in cs))
        return 5

    config = single(
        treeStableTimer=60,
        fileIsImportant=lambda c: not c.files[0].startswith("doc/"),
        priority=priority,
    )
    async with running(config, ctx) as sched:
        assert sched.schedulerid is not None
        doc = await add_change(branch="main", files=["doc/x"], revision="r0")
        await settle(sched)
        assert sched.statistics()["work_tasks"] == 1  # the consumer only: no timer
        c1 = await add_change(branch="main", revision="r1", properties={"a": (1, "Change")})
        await settle(sched)
        clock.advance(50)
        c2 = await add_change(
            branch="main", files=["doc/y"], revision="r2", properties={"b": (2, "Change")}
        )
        await settle(sched)
        assert await database.schedulers.get_change_classifications(sched.schedulerid) == {
            doc: False,
            c1: True,
            c2: False,
        }
        clock.advance(50)
        await settle(sched)
        assert buildsets.pending() == 0
        clock.advance(10)
        seen = await buildsets.next()
        await settle(sched)
        assert await database.schedulers.get_change_classifications(sched.schedulerid) == {}
    assert seen_changes == [[doc, c1, c2]]
    assert seen.priority == 5
    # the stamp and the properties of the latest change
    assert seen.stamps == [("", "main", "r2", "", "")]
    assert seen.changeids == [c2]
    assert seen.properties == {"scheduler": ("sbs", "Scheduler"), "b": (2, "Change")}


async def test_a_restart_keeps_pending_classified_changes(
    ctx: SchedulerContext,
    clock: FakeClock,
    add_change: AddChange,
    buildsets: Buildsets,
) -> None:
    config = single(treeStableTimer=60)
    async with running(config, ctx) as sched:
        pending = await add_change(branch="main", revision="r1")
        await settle(sched)
        assert sched.statistics()["work_tasks"] == 2  # the consumer and the timer
    assert buildsets.pending() == 0
    # the master comes back: the classified change gets its timer again
    async with running(config, ctx) as sched:
        assert sched.statistics()["work_tasks"] == 2
        clock.advance(59)
        await settle(sched)
        assert buildsets.pending() == 0
        clock.advance(1)
        assert (await buildsets.next()).changeids == [pending]


async def test_without_a_timer_activation_forgets_old_classifications(
    ctx: SchedulerContext,
    add_change: AddChange,
    buildsets: Buildsets,
    database: Database,
) -> None:
    async with running(single(treeStableTimer=60), ctx) as sched:
        await add_change(branch="main")
        await settle(sched)
    async with running(single(), ctx) as sched:
        assert sched.schedulerid is not None
        assert await database.schedulers.get_change_classifications(sched.schedulerid) == {}
        await settle(sched)
    assert buildsets.pending() == 0


async def test_only_important_drops_unimportant_changes(
    ctx: SchedulerContext,
    clock: FakeClock,
    add_change: AddChange,
    buildsets: Buildsets,
    database: Database,
) -> None:
    config = single(treeStableTimer=10, fileIsImportant=lambda c: False, onlyImportant=True)
    async with running(config, ctx) as sched:
        await add_change(branch="main")
        await settle(sched)
        assert sched.schedulerid is not None
        assert await database.schedulers.get_change_classifications(sched.schedulerid) == {}


async def test_any_branch_keeps_a_timer_per_branch(
    ctx: SchedulerContext,
    clock: FakeClock,
    add_change: AddChange,
    buildsets: Buildsets,
    database: Database,
) -> None:
    config = AnyBranchScheduler(name="abs", builderNames=["b3"], treeStableTimer=30)
    async with running(config, ctx) as sched:
        a1 = await add_change(branch="a", revision="1")
        await settle(sched)
        clock.advance(20)
        b1 = await add_change(branch="b", revision="2")
        await settle(sched)
        clock.advance(10)
        first = await buildsets.next()
        await settle(sched)
        # branch b's change is still waiting, though its id is below the one just built
        assert sched.schedulerid is not None
        assert await database.schedulers.get_change_classifications(sched.schedulerid) == {b1: True}
        clock.advance(20)
        second = await buildsets.next()
    assert (first.changeids, first.stamps) == ([a1], [("", "a", "1", "", "")])
    assert (second.changeids, second.stamps) == ([b1], [("", "b", "2", "", "")])
    assert first.reason == "The AnyBranchScheduler scheduler named 'abs' triggered this build"


async def test_any_branch_forgets_other_branches_only_after_building_them(
    ctx: SchedulerContext,
    clock: FakeClock,
    add_change: AddChange,
    buildsets: Buildsets,
) -> None:
    config = AnyBranchScheduler(name="abs", builderNames=["b3"], treeStableTimer=30)
    async with running(config, ctx) as sched:
        b1 = await add_change(branch="b", revision="1")
        await settle(sched)
        clock.advance(10)
        a1 = await add_change(branch="a", revision="2")
        await settle(sched)
        clock.advance(20)
        assert (await buildsets.next()).changeids == [b1]
        clock.advance(10)
        assert (await buildsets.next()).changeids == [a1]


async def test_any_branch_branches_and_change_filter(
    ctx: SchedulerContext, add_change: AddChange, buildsets: Buildsets
) -> None:
    config = AnyBranchScheduler(name="abs", builderNames=["b1"], branches=["x", "y"])
    async with running(config, ctx) as sched:
        await add_change(branch="z")
        y = await add_change(branch="y")
        await settle(sched)
        assert (await buildsets.next()).changeids == [y]
        assert buildsets.pending() == 0


async def test_codebases_each_get_a_stamp(
    ctx: SchedulerContext, add_change: AddChange, buildsets: Buildsets
) -> None:
    config = AnyBranchScheduler(
        name="abs",
        builderNames=["b1"],
        codebases={
            "app": {"repository": "r-app", "branch": "main"},
            "lib": {"repository": "r-lib"},
        },
    )
    async with running(config, ctx) as sched:
        await add_change(codebase="other", branch="main")  # not a codebase of the scheduler
        change = await add_change(codebase="lib", branch="dev", revision="9", repository="r-lib")
        await settle(sched)
        seen = await buildsets.next()
        assert buildsets.pending() == 0
    assert seen.changeids == [change]
    assert seen.stamps == [("app", "main", None, "r-app", ""), ("lib", "dev", "9", "r-lib", "")]


async def test_absolute_source_stamps_use_the_last_change_of_each_codebase(
    ctx: SchedulerContext, add_change: AddChange, buildsets: Buildsets
) -> None:
    config = SingleBranchScheduler(
        name="sbs",
        builderNames=["b1"],
        codebases=["app", "lib"],
        createAbsoluteSourceStamps=True,
        change_filter=ChangeFilter(branch="main"),
    )
    async with running(config, ctx) as sched:
        await add_change(codebase="lib", branch="main", revision="L1", repository="rl")
        await add_change(codebase="app", branch="main", revision="A1", repository="ra")
        await settle(sched)
        first, second = await buildsets.next(), await buildsets.next()
    assert first.stamps == [("app", None, None, "", ""), ("lib", "main", "L1", "rl", "")]
    # the app change's buildset remembers lib's last change
    assert second.stamps == [("app", "main", "A1", "ra", ""), ("lib", "main", "L1", "rl", "")]


async def test_renderable_properties_and_builder_names(
    ctx: SchedulerContext, add_change: AddChange, buildsets: Buildsets
) -> None:
    @renderer
    def builders(props: Any) -> list[str]:
        return ["b3"] if props.getProperty("target") == "three" else ["b1"]

    config = single(
        builderNames=builders,
        properties={"label": Interpolate("%(prop:scheduler)s-%(prop:target)s")},
    )
    async with running(config, ctx) as sched:
        await add_change(branch="main", properties={"target": ("three", "Change")})
        await settle(sched)
        seen = await buildsets.next()
    assert config.builderNames == []  # nothing a cross-reference check could verify
    assert seen.builders == ["b3"]
    assert seen.properties["label"] == ("sbs-three", "Scheduler")


async def test_unknown_builders_are_left_out(
    ctx: SchedulerContext, add_change: AddChange, buildsets: Buildsets
) -> None:
    async with running(single(builderNames=["b2", "nope"]), ctx) as sched:
        await add_change(branch="main")
        await settle(sched)
        assert (await buildsets.next()).builders == ["b2"]


async def test_a_disabled_scheduler_ignores_changes_until_enabled(
    ctx: SchedulerContext,
    add_change: AddChange,
    buildsets: Buildsets,
    updates: Updates,
) -> None:
    async with running(single(), ctx) as sched:
        assert sched.schedulerid is not None
        await updates.set_scheduler_enabled(sched.schedulerid, False)
        await eventually(lambda: not sched.enabled, within=10)
        await settle(sched)
        await add_change(branch="main")
        await settle(sched)
        assert buildsets.pending() == 0
        await updates.set_scheduler_enabled(sched.schedulerid, True)
        await eventually(lambda: sched.statistics()["work_tasks"] == 1, within=10)
        later = await add_change(branch="main")
        await settle(sched)
        assert (await buildsets.next()).changeids == [later]


async def test_a_scheduler_disabled_before_start_does_not_consume(
    ctx: SchedulerContext,
    add_change: AddChange,
    buildsets: Buildsets,
    updates: Updates,
) -> None:
    schedulerid = await updates.find_scheduler_id("sbs")
    await updates.set_scheduler_enabled(schedulerid, False)
    async with running(single(), ctx) as sched:
        assert not sched.enabled and sched.statistics()["work_tasks"] == 0
        await add_change(branch="main")
        await settle(sched)
        assert buildsets.pending() == 0


async def test_reconfigure_takes_the_new_filter(
    ctx: SchedulerContext, add_change: AddChange, buildsets: Buildsets
) -> None:
    async with running(single(), ctx) as sched:
        await sched.reconfigure(single(branch="dev"))
        await add_change(branch="main")
        dev = await add_change(branch="dev")
        await settle(sched)
        assert (await buildsets.next()).changeids == [dev]
        assert buildsets.pending() == 0


async def test_a_failing_file_is_important_skips_the_change(
    ctx: SchedulerContext, add_change: AddChange, buildsets: Buildsets
) -> None:
    def broken(change: Any) -> bool:
        if change.revision == "bad":
            raise RuntimeError("user code")
        return True

    async with running(single(fileIsImportant=broken), ctx) as sched:
        await add_change(branch="main", revision="bad")
        good = await add_change(branch="main", revision="good")
        await settle(sched)
        assert (await buildsets.next()).changeids == [good]
        assert sched.running


def test_buildbot_defaults_and_state_names() -> None:
    s = single()
    assert s.reason == "The SingleBranchScheduler scheduler named 'sbs' triggered this build"
    assert s.codebases == {"": {}}
    assert s.builderNames == ["b1", "b2"]
    assert type(s).state_class_name() == "SingleBranchScheduler"
    assert s.properties_with_scheduler() == {"scheduler": ("sbs", "Scheduler")}
    custom = single(reason="%(classname)s/%(name)s")
    assert custom.reason == "SingleBranchScheduler/sbs"
    assert single() == single() and single() != single(branch="dev")


def bad(value: object) -> Any:
    """A value of the wrong type, as a master.cfg may pass."""
    return value


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SingleBranchScheduler("x", builderNames=["b"], branch="m"), "pass arguments"),
        (
            lambda: SingleBranchScheduler(name="x", builderNames=["b"]),
            "the 'branch' argument to SingleBranchScheduler is mandatory unless change_filter",
        ),
        (
            lambda: SingleBranchScheduler(name="x", builderNames=["b"], branch="m", branches=["m"]),
            "the 'branches' argument is not allowed",
        ),
        (
            lambda: AnyBranchScheduler(name="x", builderNames=["b"], branch="m"),
            "the 'branch' argument is not allowed for AnyBranchScheduler",
        ),
        (
            lambda: AnyBranchScheduler(name="x", builderNames="b"),
            "builderNames must be a list of builder names",
        ),
        (lambda: AnyBranchScheduler(builderNames=["b"]), "name must be a non-empty string"),
        (
            lambda: AnyBranchScheduler(name="x", builderNames=["b"], codebases=bad({"a": "main"})),
            "codebases must be a dict of dicts",
        ),
        (
            lambda: AnyBranchScheduler(
                name="x", builderNames=["b"], codebases={"a": {"branchname": "m"}}
            ),
            "unknown codebase keys branchname for codebase 'a'",
        ),
        (
            lambda: AnyBranchScheduler(name="x", builderNames=["b"], priority=bad("high")),
            "priority must be an integer or a function, not str",
        ),
        (
            lambda: AnyBranchScheduler(name="x", builderNames=["b"], properties={"p": object()}),
            "property 'p' must be a JSON value",
        ),
        (
            lambda: AnyBranchScheduler(name="x", builderNames=["b"], fileIsImportant=bad(True)),
            "fileIsImportant must be a callable",
        ),
        (
            lambda: AnyBranchScheduler(name="x", builderNames=["b"], treeStableTimer=bad("5")),
            "treeStableTimer must be a number of seconds or None",
        ),
        (
            lambda: AnyBranchScheduler(name="x", builderNames=["b"], reason="%(who)s"),
            "reason '%(who)s' can only use %(name)s and %(classname)s",
        ),
    ],
)
def test_bad_arguments_are_config_errors(build: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert message in info.value.message


def test_codebases_as_a_list() -> None:
    config = AnyBranchScheduler(name="x", builderNames=["b"], codebases=["a", "b"])
    assert config.codebases == {"a": {}, "b": {}}
    assert isinstance(config, SchedulerBase)


async def test_a_scheduler_that_changes_class_cannot_be_reconfigured_in_place(
    ctx: SchedulerContext,
) -> None:
    async with running(single(), ctx) as sched:
        other = AnyBranchScheduler(name="sbs", builderNames=["b1"])
        with pytest.raises(TypeError, match="changed class"):
            await sched.reconfigure(other)
        assert sched.config == single()

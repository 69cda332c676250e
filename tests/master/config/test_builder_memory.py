"""What 10,000 builders made on one line of master.cfg share instead of holding each a copy
(docs/performance.md): the place they were defined, an empty env and properties, the record of
their arguments; and what a builder's service leaves out until it needs it."""

from __future__ import annotations

import asyncio
import platform

from buildyard.common.service import Service
from buildyard.master.builds.builder import BuilderConfig
from buildyard.master.builds.factory import BuildFactory
from buildyard.master.distributor.botmaster import Builder
from buildyard.master.master import give_back_freed_memory


def _builders(n: int) -> list[BuilderConfig]:
    return [
        BuilderConfig(name=f"b{i}", workernames=["w"], factory=BuildFactory()) for i in range(n)
    ]


def test_builders_made_on_one_line_share_what_is_equal() -> None:
    a, b = _builders(2)
    assert a.defined_at is not None
    assert a.defined_at is b.defined_at  # one Location per place
    assert a.env is not b.env  # dicts of their own (master.cfg may fill them), as Buildbot's
    assert dict(a.env) == {} and a.builddir is a.name
    # the keywords are kept once, as the arguments compared and as the raw ones
    assert a._config_arguments is a._raw_arguments[1]
    assert isinstance(a.factory, BuildFactory) and isinstance(b.factory, BuildFactory)
    assert a.factory._raw_arguments is b.factory._raw_arguments
    assert a == BuilderConfig(name="b0", workernames=["w"], factory=BuildFactory())
    assert a != b


def test_an_unsafe_name_still_gets_a_safe_builddir() -> None:
    assert BuilderConfig(name="a b/c", workernames=["w"], factory=BuildFactory()).builddir == (
        "a_b_c"
    )


async def test_a_service_makes_its_task_set_on_the_first_spawn() -> None:
    quiet, busy = Service("quiet"), Service("busy")
    assert quiet._tasks is busy._tasks  # nothing spawned: nothing of their own
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.Event().wait()

    task = busy.spawn(work(), name="work")
    await asyncio.wait_for(started.wait(), 10)
    assert busy._tasks == {task} and quiet._tasks == set()
    await busy._cancel_tasks()
    assert task.cancelled()


def test_a_builder_service_has_no_dict_and_no_children_of_its_own() -> None:
    a, b = Builder("a", None), Builder("b", None)
    assert not hasattr(a, "__dict__")  # slots: 10,000 of these on a big master
    assert a._children is b._children and a.children == ()
    parent = Service("parent")
    parent.add_child(a)
    assert parent.child("a") is a and b.children == ()


def test_freed_heap_pages_are_given_back_where_glibc_can() -> None:
    # after start-up and each reconfig (BuildMaster.run): about 1.5 MiB with 10,000 builders
    assert give_back_freed_memory() is (platform.libc_ver()[0] == "glibc")


def test_a_builder_without_env_or_properties_has_dicts_of_its_own() -> None:
    """As in Buildbot, master.cfg may fill them after making the builder."""
    from buildyard.plugins import util

    first = util.BuilderConfig(name="a", workernames=["w"], factory=util.BuildFactory())
    second = util.BuilderConfig(name="b", workernames=["w"], factory=util.BuildFactory())
    first.properties["x"] = 1
    first.env["PATH"] = "/bin"
    assert first.properties == {"x": 1} and first.env == {"PATH": "/bin"}
    assert second.properties == {} and second.env == {}

"""The service tree: start order, reverse stop, owned tasks, failures, reconfig by name."""

from __future__ import annotations

import asyncio

import pytest

from buildyard.common.service import ConfiguredService, Service, ServiceManager


class Recorder(Service):
    def __init__(self, name: str, events: list[str]) -> None:
        super().__init__(name)
        self.events = events

    async def start_service(self) -> None:
        self.events.append(f"start {self.name}")

    async def stop_service(self) -> None:
        self.events.append(f"stop {self.name}")


async def test_children_start_in_order_and_stop_in_reverse() -> None:
    events: list[str] = []
    root = Recorder("root", events)
    a = root.add_child(Recorder("a", events))
    a.add_child(Recorder("a1", events))
    root.add_child(Recorder("b", events))
    await root.start()
    assert events == ["start root", "start a", "start a1", "start b"]
    events.clear()
    await root.stop()
    assert events == ["stop b", "stop a1", "stop a", "stop root"]
    assert not root.running and not a.running


async def test_failed_child_start_unwinds_started_siblings() -> None:
    events: list[str] = []

    class Broken(Service):
        async def start_service(self) -> None:
            raise RuntimeError("no")

    root = Recorder("root", events)
    root.add_child(Recorder("a", events))
    root.add_child(Broken("broken"))
    with pytest.raises(RuntimeError):
        await root.start()
    assert events == ["start root", "start a", "stop a", "stop root"]
    assert not root.running


async def test_stop_cancels_owned_tasks() -> None:
    svc = Service("s")
    await svc.start()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    _ = svc.spawn(forever(), name="forever")
    await asyncio.sleep(0)
    assert svc.statistics()["tasks"] == 1
    await svc.stop()
    assert cancelled.is_set()
    assert svc.statistics()["tasks"] == 0


async def test_task_failure_reaches_the_root() -> None:
    root = Service("root")
    root.failures = asyncio.Queue()
    child = root.add_child(Service("child"))
    await root.start()

    async def boom() -> None:
        raise ValueError("broken loop")

    _ = child.spawn(boom(), name="boom")
    exc = await asyncio.wait_for(root.failures.get(), 5)
    assert isinstance(exc, ValueError) and str(exc) == "broken loop"
    await root.stop()


class Thing(ConfiguredService[int]):
    starts = 0

    async def start_service(self) -> None:
        Thing.starts += 1


async def test_manager_adds_removes_updates_and_leaves_unchanged_running() -> None:
    Thing.starts = 0
    mgr: ServiceManager[int] = ServiceManager("things", factory=Thing)
    await mgr.start()
    await mgr.apply({"a": 1, "b": 2, "c": 3})
    a, b = mgr.child("a"), mgr.child("b")
    result = await mgr.apply({"a": 1, "b": 20, "d": 4})
    assert result.added == ("d",)
    assert result.removed == ("c",)
    assert result.updated == ("b",)
    assert result.unchanged == ("a",)
    assert mgr.child("a") is a and a.running  # the same object, never restarted
    assert mgr.child("b") is b and isinstance(b, Thing) and b.config == 20
    assert "c" not in mgr
    assert sorted(c.name for c in mgr) == ["a", "b", "d"]
    # started: a, b, c, then d; the reconfig restarted none of the kept ones
    assert Thing.starts == 4
    await mgr.stop()
    assert not a.running


async def test_manager_logs_each_service_while_few_and_a_summary_when_many() -> None:
    import structlog

    mgr: ServiceManager[int] = ServiceManager("things", factory=Thing)
    await mgr.start()
    with structlog.testing.capture_logs() as logs:
        await mgr.apply({"a": 1, "b": 2})
    logs = [e for e in logs if e["log_level"] == "info"]
    assert [(e["event"], e["service"]) for e in logs] == [
        ("service_added", "things/a"),
        ("service_added", "things/b"),
    ]
    many = {f"s{i}": i for i in range(200)}
    with structlog.testing.capture_logs() as logs:
        result = await mgr.apply(many)
    logs = [e for e in logs if e["log_level"] == "info"]
    assert len(result.added) == 200 and len(result.removed) == 2
    assert [(e["event"], e["count"]) for e in logs] == [
        ("services_removed", 2),
        ("services_added", 200),
    ]
    assert logs[1]["first"] == ["s0", "s1", "s2", "s3", "s4"]
    await mgr.stop()


async def test_adding_to_a_running_parent_starts_the_child() -> None:
    events: list[str] = []
    root = Recorder("root", events)
    await root.start()
    await root.add_service(Recorder("late", events))
    assert events[-1] == "start late"
    await root.remove_service("late")
    assert events[-1] == "stop late"
    root.add_child(Recorder("x", events))
    with pytest.raises(ValueError, match="already has a child"):
        root.add_child(Recorder("x", events))
    await root.stop()


async def test_failing_start_service_leaves_the_service_stopped() -> None:
    class Broken(Service):
        async def start_service(self) -> None:
            raise RuntimeError("cannot start")

    svc = Broken("b")
    with pytest.raises(RuntimeError):
        await svc.start()
    assert not svc.running


async def test_a_child_failing_to_stop_does_not_keep_its_siblings_running() -> None:
    events: list[str] = []

    class BadStop(Service):
        async def stop_service(self) -> None:
            raise RuntimeError("stop failed")

    root = Recorder("root", events)
    a = root.add_child(Recorder("a", events))
    root.add_child(BadStop("bad"))
    await root.start()
    with pytest.raises(ExceptionGroup) as info:
        await root.stop()
    assert [str(e) for e in info.value.exceptions] == ["stop failed"]
    assert not root.running and not a.running
    assert events[-2:] == ["stop a", "stop root"]

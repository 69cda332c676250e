"""A reconfig is all or nothing: one that fails at any step of its apply leaves the builders,
workers, schedulers, change sources and both listeners exactly as they were (seen through the
REST API), and the log says it was rolled back."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from buildyard.master.config.loader import load_master_config
from buildyard.master.config.master_config import MasterConfig
from buildyard.master.db import migrate
from buildyard.master.db.connector import Database
from buildyard.master.master import APPLY_STEPS, BuildMaster
from buildyard.testing.clock import FakeClock
from buildyard.testing.postgres import free_port

OLD = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['title'] = "Old"
c['workers'] = [worker.Worker("w", "pass"), worker.Worker("w2", "pass")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': 'tcp:{worker_port}:interface=127.0.0.1'}}}}
c['builders'] = [
    util.BuilderConfig(name="a", workernames=["w"], factory=util.BuildFactory()),
    util.BuilderConfig(name="b", workernames=["w2"], factory=util.BuildFactory()),
]
c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=["a"])]
c['www'] = {{'port': 'tcp:{www_port}:interface=127.0.0.1'}}
c['db'] = {{'db_url': {db_url!r}}}
"""

# every part changes: a builder updated, one removed, one added (same for workers and
# schedulers), a new title, and both listeners move
NEW = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['title'] = "New"
c['workers'] = [worker.Worker("w", "pass"), worker.Worker("w3", "pass")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': 'tcp:{worker_port}:interface=127.0.0.1'}}}}
c['builders'] = [
    util.BuilderConfig(name="a", workernames=["w"], factory=util.BuildFactory(),
                       description="changed", tags=["new-tag"]),
    util.BuilderConfig(name="c", workernames=["w", "w3"], factory=util.BuildFactory()),
]
c['schedulers'] = [
    schedulers.ForceScheduler(name="force", builderNames=["a", "c"]),
    schedulers.ForceScheduler(name="force-c", builderNames=["c"]),
]
c['www'] = {{'port': 'tcp:{www_port}:interface=127.0.0.1'}}
c['db'] = {{'db_url': {db_url!r}}}
"""

RESOURCES = ("builders", "workers", "schedulers", "changesources", "forceschedulers")


async def _upgraded(db_url: str) -> str:
    db = Database(db_url, clock=FakeClock())
    await migrate.upgrade(db)
    await db.close()
    return db_url


async def _seen(port: int) -> dict[str, Any]:
    """What the REST API and the web server show."""
    seen: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        for name in (*RESOURCES, "config"):
            path = "/config" if name == "config" else f"/api/v2/{name}"
            async with http.get(
                f"http://127.0.0.1:{port}{path}", headers={"Accept": "application/json"}
            ) as resp:
                assert resp.status == 200, await resp.text()
                seen[name] = await resp.json()
    seen["config"] = {k: seen["config"][k] for k in ("title", "buildbotURL", "auth")}
    return seen


def _listening(port: int) -> bool:
    """Whether anything accepts connections on ``port`` (only asked of ports that should be
    closed: a connection accepted there could be left to the server's shutdown)."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _worker_listener_answers(port: int) -> bool:
    """Whether the worker listener on ``port`` answers: 401 to a worker without credentials
    (a whole exchange, so the server has handled the connection when this returns)."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/") as resp:
        return resp.status == 401


def _fail_once_after(step: str, new_title: str) -> Callable[..., Any]:
    """BuildMaster._apply_step that raises once, after ``step`` ran for the new config (so the
    step itself has changed what it changes)."""
    original = BuildMaster._apply_step
    fired: list[str] = []

    async def failing(self: BuildMaster, name: str, config: MasterConfig, plan: Any) -> None:
        await original(self, name, config, plan)
        if name == step and config.title == new_title and not fired:
            fired.append(name)
            raise RuntimeError(f"injected failure after the {name} step")

    return failing


def _running(master: BuildMaster) -> dict[str, Any]:
    """The running services, and the configuration each runs."""
    return {
        "workers": {n: s.config for n, s in master.workers.configured().items()},
        "builders": {n: s.config for n, s in master.botmaster.builders.items()},
        "schedulers": {n: s.config for n, s in master.scheduler_manager.configured().items()},
        "change_sources": {n: s.config for n, s in master.change_svc.configured().items()},
        "revlink": master.data.updates.revlink_hook,
        "config": master.config,
    }


async def _fails_at_each_step_and_rolls_back(
    tmp_path: Path, db_url: str, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    www_port, worker_port = free_port(), free_port()
    new_www_port, new_worker_port = free_port(), free_port()
    cfg = tmp_path / "master.cfg"
    cfg.write_text(OLD.format(www_port=www_port, worker_port=worker_port, db_url=db_url))
    master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
    await master.start()
    try:
        before = await _seen(www_port)
        running = _running(master)
        assert [b["name"] for b in before["builders"]["builders"]] == ["a", "b"]
        cfg.write_text(
            NEW.format(www_port=new_www_port, worker_port=new_worker_port, db_url=db_url)
        )
        with monkeypatch.context() as patch:
            patch.setattr(BuildMaster, "_apply_step", _fail_once_after(step, "New"))
            with structlog.testing.capture_logs() as logs:
                assert await master.reconfig() is False

        events = [entry["event"] for entry in logs]
        assert "reconfig_rolled_back" in events, events
        assert "reconfig_failed" in events, events
        assert "reconfig_rolled_back_partly" not in events, events
        failed = next(e for e in logs if e["event"] == "reconfig_failed")
        assert "injected failure" in failed["reason"]
        assert await _seen(www_port) == before
        assert _running(master) == running
        assert master.www.port == www_port
        assert master.workers.listener.port == worker_port
        assert await _worker_listener_answers(worker_port)
        assert not _listening(new_www_port)
        assert not _listening(new_worker_port)

        # nothing is left behind: the same config applies now, on the ports it asked for
        assert await master.reconfig() is True
        after = await _seen(new_www_port)
        assert after["config"]["title"] == "New"
        assert [b["name"] for b in after["builders"]["builders"]] == ["a", "b", "c"]
        assert not _listening(www_port)
        assert await _worker_listener_answers(new_worker_port)
    finally:
        await master.stop()


@pytest.mark.parametrize("step", APPLY_STEPS)
async def test_a_reconfig_that_fails_at_any_step_is_rolled_back(
    tmp_path: Path, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = await _upgraded(f"sqlite:///{tmp_path / 'state.sqlite'}")
    await _fails_at_each_step_and_rolls_back(tmp_path, db_url, step, monkeypatch)


@pytest.mark.parametrize("step", [APPLY_STEPS[-1]])
async def test_a_reconfig_that_fails_is_rolled_back_on_postgresql(
    tmp_path: Path, step: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = await _upgraded(postgres_url)
    await _fails_at_each_step_and_rolls_back(tmp_path, db_url, step, monkeypatch)


async def test_a_taken_port_changes_nothing(tmp_path: Path) -> None:
    db_url = await _upgraded(f"sqlite:///{tmp_path / 'state.sqlite'}")
    www_port, worker_port, new_www_port = free_port(), free_port(), free_port()
    cfg = tmp_path / "master.cfg"
    cfg.write_text(OLD.format(www_port=www_port, worker_port=worker_port, db_url=db_url))
    master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
    await master.start()
    try:
        before = await _seen(www_port)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            cfg.write_text(
                NEW.format(www_port=new_www_port, worker_port=taken.getsockname()[1], db_url=db_url)
            )
            with structlog.testing.capture_logs() as logs:
                assert await master.reconfig() is False
        failed = next(e for e in logs if e["event"] == "reconfig_failed")
        assert "the running configuration is unchanged" in failed["reason"]
        assert await _seen(www_port) == before
        assert not _listening(new_www_port)  # bound while preparing, closed again
        assert master.workers.listener.port == worker_port
    finally:
        await master.stop()


async def test_a_failed_reconfig_on_the_same_web_port_keeps_serving_the_old_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = await _upgraded(f"sqlite:///{tmp_path / 'state.sqlite'}")
    www_port, worker_port = free_port(), free_port()
    cfg = tmp_path / "master.cfg"
    cfg.write_text(OLD.format(www_port=www_port, worker_port=worker_port, db_url=db_url))
    master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
    await master.start()
    try:
        before = await _seen(www_port)
        # the new site is served on the same socket next to the old one, then taken back
        cfg.write_text(NEW.format(www_port=www_port, worker_port=worker_port, db_url=db_url))
        with monkeypatch.context() as patch:
            patch.setattr(BuildMaster, "_apply_step", _fail_once_after("hooks", "New"))
            assert await master.reconfig() is False
        assert await _seen(www_port) == before
        assert await master.reconfig() is True
        assert (await _seen(www_port))["config"]["title"] == "New"
        assert master.www.port == www_port
    finally:
        await master.stop()


async def test_a_listener_that_fails_to_close_leaves_the_new_configuration_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once every step is applied the new configuration is committed: a failure while the old
    worker listener closes is logged, and the web server's change is finished all the same
    (before, the old and the new web applications both kept serving, and ``master.config``
    stayed the old one while the services ran the new)."""
    db_url = await _upgraded(f"sqlite:///{tmp_path / 'state.sqlite'}")
    www_port, worker_port = free_port(), free_port()
    new_www_port, new_worker_port = free_port(), free_port()
    cfg = tmp_path / "master.cfg"
    cfg.write_text(OLD.format(www_port=www_port, worker_port=worker_port, db_url=db_url))
    master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
    await master.start()
    try:
        cfg.write_text(
            NEW.format(www_port=new_www_port, worker_port=new_worker_port, db_url=db_url)
        )
        from buildyard.master.workers.listener import ListenerChange

        original = ListenerChange.finish

        async def failing_finish(self: ListenerChange) -> None:
            await original(self)
            raise RuntimeError("injected failure while the old listener closes")

        with monkeypatch.context() as patch:
            patch.setattr(ListenerChange, "finish", failing_finish)
            with structlog.testing.capture_logs() as logs:
                assert await master.reconfig() is True
        assert [e["part"] for e in logs if e["event"] == "reconfig_finish_failed"] == [
            "worker_listener"
        ]
        assert master.config.title == "New"
        after = await _seen(new_www_port)
        assert after["config"]["title"] == "New"
        assert not _listening(www_port)  # the old web application was closed too
    finally:
        await master.stop()

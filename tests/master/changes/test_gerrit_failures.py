"""A Gerrit source whose database write fails, or which finds no ssh, logs it naming itself
and goes on: nothing it meets while turning events into changes stops the master."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import structlog

from buildyard.master.changes.base import ChangeSourceContext
from buildyard.master.changes.gerrit import (
    GerritChangeSource,
    GerritEventLogPoller,
    GerritEventLogPollerService,
)
from buildyard.master.db.connector import Database
from buildyard.testing.clock import FakeClock
from buildyard.testing.processes import eventually
from tests.master.changes import gerrit_events as ev


def _fail_once(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> list[int]:
    """``obj.name`` raises a database-like error on its first call, then works."""
    calls: list[int] = []
    real = getattr(obj, name)

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return await real(*args, **kwargs)

    monkeypatch.setattr(obj, name, flaky)
    return calls


async def test_a_database_error_on_one_event_is_logged_and_the_next_goes_on(
    ctx: ChangeSourceContext, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = int(ctx.clock.now())
    config = GerritEventLogPoller(baseURL="http://127.0.0.1:9", auth=None, gitBaseURL="ssh://g")
    poller: GerritEventLogPollerService = config.make_service(config.name, ctx)
    lines = [ev.patchset_created(now - 20), ev.ref_updated(now - 10)]

    async def events_since(self: Any, ts: float) -> list[str]:
        return [json.dumps(e) for e in lines]

    monkeypatch.setattr("buildyard.master.changes.gerrit._EventsLog.events_since", events_since)
    calls = _fail_once(monkeypatch, ctx.updates, "add_change")
    with structlog.testing.capture_logs() as logs:
        await poller.poll()  # does not raise
    [failed] = [e for e in logs if e["event"] == "gerrit_event_failed"]
    assert failed["changesource"] == poller.name
    assert "database is locked" in failed["error"]
    assert len(calls) == 2
    assert [c.category for c in await database.changes.get_changes()] == ["ref-updated"]

    # a failure outside one event (here: remembering it) ends that poll only, logged
    lines.append(ev.ref_updated(now - 5, "refs/heads/next"))
    _fail_once(monkeypatch, ctx.updates, "set_state")
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [failed] = [e for e in logs if e["event"] == "gerrit_poll_failed"]
    assert failed["changesource"] == poller.name
    await poller.poll()
    assert poller.polls == 3


async def test_a_missing_ssh_for_get_files_is_logged_and_the_change_made(
    ctx: ChangeSourceContext,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    config = GerritChangeSource("gerrit.example.org", "ci", get_files=True)
    service = config.make_service(config.name, ctx)
    await service._settings()
    await service._load_state()
    with structlog.testing.capture_logs() as logs:
        await service.take_event(ev.patchset_created(int(ctx.clock.now())))
    [failed] = [e for e in logs if e["event"] == "gerrit_files_failed"]
    assert failed["changesource"] == service.name
    assert "cannot run ssh" in failed["error"]
    [change] = await database.changes.get_changes()
    assert list(change.files) == ["unknown"]


async def test_a_failing_stream_round_is_logged_and_retried_the_master_goes_on(
    ctx: ChangeSourceContext, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = GerritChangeSource("gerrit.example.org", "ci")
    service = config.make_service(config.name, ctx)
    rounds: list[int] = []
    blocked = asyncio.Event()

    async def stream_once() -> int | None:
        rounds.append(1)
        if len(rounds) == 1:
            raise RuntimeError("database is locked")
        await blocked.wait()
        return 0

    monkeypatch.setattr(service, "_stream_once", stream_once)
    with structlog.testing.capture_logs() as logs:
        await service.start()
        try:
            await eventually(lambda: clock.sleepers == 1, within=10)
            clock.advance(1)
            await eventually(lambda: len(rounds) == 2, within=10)
            # the stream's task still runs: nothing reached the master's failure queue
            assert service._tasks and not any(t.done() for t in service._tasks)
        finally:
            await service.stop()
    [error] = [e for e in logs if e["event"] == "gerrit_stream_error"]
    assert error["changesource"] == service.name
    assert "database is locked" in error["error"]
    assert not [e for e in logs if e["event"] == "service_task_failed"]

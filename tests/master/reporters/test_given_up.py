"""Reports given up after their retries, kept in a real (SQLite) state table: at most
``MAX_GIVEN_UP`` per reporter (the oldest dropped, and logged), and replayed one after the
other in order, each forgotten only once delivered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog

from buildyard.master.db.connector import Database
from buildyard.master.mq.local import LocalMQ
from buildyard.master.reporters import base
from buildyard.master.reporters.base import GIVEN_UP_STATE, ReporterBase
from buildyard.master.reporters.service import DataReader, ReporterEnvironment


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.sqlite'}"


class Generator:
    wanted_event_keys = [("builds", None, "finished")]

    def generate(self, env: Any, reporter: Any, key: Any, body: dict[str, Any]) -> Any:
        return {"buildid": body["buildid"]}


class Flaky(ReporterBase):
    """Records what it delivers; ``fail`` names the build ids whose send fails (a connection
    error), ``block`` the one whose send waits forever."""

    def __init__(self) -> None:
        super().__init__(generators=[Generator()])
        self.generators = [Generator()]
        self.sent: list[int] = []
        self.fail: set[int] = set()
        self.block: int | None = None
        self.blocked = asyncio.Event()

    async def sendMessage(self, reports: Any) -> None:  # noqa: N802 - Buildbot's name
        (report,) = reports
        if report["buildid"] in self.fail:
            raise ConnectionRefusedError("nothing listens")
        if report["buildid"] == self.block:
            self.blocked.set()
            await asyncio.Event().wait()
        self.sent.append(report["buildid"])


async def reporter(database: Database) -> Flaky:
    async def get(path: Any, spec: Any) -> Any:
        raise AssertionError("not read")

    rep = Flaky()
    rep._env = ReporterEnvironment(data=DataReader(get), mq=LocalMQ(), state=database.state)
    return rep


def key(buildid: int) -> tuple[str, ...]:
    return ("builds", str(buildid), "finished")


async def kept_ids(rep: Flaky) -> list[int]:
    objectid = await rep._state_id()
    assert objectid is not None and rep._env is not None and rep._env.state is not None
    saved = await rep._env.state.get_state(objectid, GIVEN_UP_STATE, [])
    return [e["body"]["buildid"] for e in saved]


async def test_kept_reports_are_capped_the_oldest_dropped_and_logged(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "MAX_GIVEN_UP", 3)
    rep = await reporter(database)
    with structlog.testing.capture_logs() as logs:
        for buildid in range(1, 6):
            assert await rep._keep_given_up(key(buildid), {"buildid": buildid}, "refused")
    assert await kept_ids(rep) == [3, 4, 5]
    dropped = [e for e in logs if e["event"] == "reporter_report_dropped"]
    assert [(e["reporter"], e["count"]) for e in dropped] == [("Flaky_Generator", 1)] * 2


async def test_a_replay_sends_in_order_and_keeps_what_it_did_not_deliver(
    database: Database,
) -> None:
    rep = await reporter(database)
    for buildid in (1, 2, 3, 4):
        await rep._keep_given_up(key(buildid), {"buildid": buildid}, "refused")

    # the server is still down: every report stays kept, none is kept twice
    rep.fail = {1, 2, 3, 4}
    await rep._replay_given_up()
    assert await kept_ids(rep) == [1, 2, 3, 4]

    # 2 fails again; the others are delivered, in the order they came, and forgotten
    rep.fail = {2}
    await rep._replay_given_up()
    assert rep.sent == [1, 3, 4]
    assert await kept_ids(rep) == [2]

    # a replay stopped (or a master crashing) while sending: what it had not delivered stays
    for buildid in (5, 6):
        await rep._keep_given_up(key(buildid), {"buildid": buildid}, "refused")
    rep.fail = set()
    rep.block = 5
    replay = asyncio.ensure_future(rep._replay_given_up())
    await asyncio.wait_for(rep.blocked.wait(), 30)
    replay.cancel()
    await asyncio.wait({replay})
    assert rep.sent == [1, 3, 4, 2]
    assert await kept_ids(rep) == [5, 6]

    rep.block = None
    await rep._replay_given_up()
    assert rep.sent == [1, 3, 4, 2, 5, 6]
    assert await kept_ids(rep) == []

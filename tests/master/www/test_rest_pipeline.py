"""Builds, steps, logs and raw log downloads through a real aiohttp server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from buildyard.master.data.api import DataAPI
from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.mq.local import LocalMQ
from buildyard.master.www.app import make_app
from buildyard.testing.clock import FakeClock
from tests.master.data.pipeline_rows import Rows, write_rows

JSON = {"Accept": "application/json"}
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def served(database: Database, clock: FakeClock) -> AsyncIterator[tuple[Client, Rows]]:
    rows = await write_rows(Updates(db=database, mq=LocalMQ(), clock=clock), database, clock)
    async with TestClient(
        TestServer(make_app(data=DataAPI(db=database), title="t"), host="127.0.0.1")
    ) as c:
        yield c, rows


async def test_builds_collection_and_item(served: tuple[Client, Rows]) -> None:
    client, rows = served
    resp = await client.get("/api/v2/builds?complete=true&order=-buildid&limit=1", headers=JSON)
    assert resp.status == 200
    body = await resp.json()
    assert [b["buildid"] for b in body["builds"]] == [rows.build_bad]
    assert body["meta"] == {"total": 2}
    item = await (await client.get(f"/api/v2/builds/{rows.build_ok}", headers=JSON)).json()
    assert item["meta"] == {}
    assert [b["results"] for b in item["builds"]] == [0]
    props = await (
        await client.get(f"/api/v2/builds/{rows.build_ok}/properties", headers=JSON)
    ).json()
    assert props == {
        "properties": [{"branch": ["main", "Build"], "workername": ["w1", "Worker"]}],
        "meta": {},
    }


async def test_log_contents_envelope(served: tuple[Client, Rows]) -> None:
    client, rows = served
    resp = await client.get(f"/api/v2/logs/{rows.summary_log}/contents?offset=2&limit=1")
    assert await resp.json(content_type=None) == {
        "logchunks": [{"logid": rows.summary_log, "firstline": 2, "content": "line 2\n"}],
        "meta": {},
    }


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v2/builds/999", 404),
        ("/api/v2/builds?results__ne=x", 400),
        ("/api/v2/steps/999/logs/stdio", 404),
        ("/api/v2/logs/999/raw", 404),
        ("/api/v2/builds/1/raw", 404),
    ],
)
async def test_errors(served: tuple[Client, Rows], path: str, status: int) -> None:
    client, _ = served
    resp = await client.get(path)
    assert resp.status == status
    assert "error" in await resp.json(content_type=None)


async def test_raw_log_download(served: tuple[Client, Rows]) -> None:
    client, rows = served
    resp = await client.get(f"/api/v2/steps/{rows.compile_step}/logs/stdio/raw")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    assert resp.headers["Content-Disposition"] == (
        "attachment; filename=b1_build_1_step_compile_log_stdio"
    )
    assert await resp.text() == (
        "Builder: b1\nBuild number: 1\nWorker name: w1\n"
        "running make\ncompiling\noops: warning\ndone\n"
    )
    inline = await client.get(f"/api/v2/logs/{rows.summary_log}/raw_inline")
    assert "Content-Disposition" not in inline.headers
    assert await inline.text() == "".join(f"line {i}\n" for i in range(5))
    # a log is shown sandboxed: an html log's script never runs with the viewer's session
    for response in (resp, inline):
        assert response.headers["Content-Security-Policy"] == "sandbox"
        assert response.headers["X-Content-Type-Options"] == "nosniff"

"""GET /api/v2 over a real database and a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from buildyard.master.data.api import DataAPI
from buildyard.master.db.connector import Database
from buildyard.master.www.app import make_app


@pytest.fixture
async def client(database: Database) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    for name in ("b", "a", "c"):
        mid = await database.masters.find_master_id(name)
        if name != "c":
            await database.masters.set_master_state(mid, active=True)
    async with TestClient(
        TestServer(make_app(data=DataAPI(db=database), title="t"), host="127.0.0.1")
    ) as c:
        yield c


JSON = {"Accept": "application/json"}


async def test_collection_envelope_filters_order_and_fields(
    client: TestClient[web.Request, web.Application],
) -> None:
    resp = await client.get(
        "/api/v2/masters?active=true&order=-name&field=name&field=active", headers=JSON
    )
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == {
        "masters": [{"name": "b", "active": True}, {"name": "a", "active": True}],
        "meta": {"total": 2},
    }
    paged = await (await client.get("/api/v2/masters?order=name&limit=1&offset=1")).json(
        content_type=None  # without Accept: application/json the reply is pretty text
    )
    assert [m["name"] for m in paged["masters"]] == ["b"]
    assert paged["meta"] == {"total": 3}


async def test_single_item_envelope(client: TestClient[web.Request, web.Application]) -> None:
    body = await (await client.get("/api/v2/masters/1", headers=JSON)).json()
    assert body["meta"] == {}
    assert [m["masterid"] for m in body["masters"]] == [1]


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/v2/masters/99", 404, "no such master"),
        ("/api/v2/masters/99999999999999999999", 404, "invalid path"),
        ("/api/v2/masters/", 404, "invalid path"),
        ("/api/v2/nothing", 404, "invalid path"),
        ("/api/v2/masters?bogus=1", 400, "unrecognized query parameter 'bogus'"),
        ("/api/v2/masters?masterid=99999999999999999999", 400, "out of range"),
        ("/api/v2/masters?limit=x", 400, "not an integer"),
    ],
)
async def test_bad_requests_say_what_is_wrong(
    client: TestClient[web.Request, web.Application], path: str, status: int, message: str
) -> None:
    resp = await client.get(path)
    assert resp.status == status
    assert message in (await resp.json(content_type=None))["error"]


async def test_raw_is_a_name_except_after_a_log(
    client: TestClient[web.Request, web.Application], database: Database
) -> None:
    # only a log path followed by raw/raw_inline is a download; a builder may be called "raw"
    await database.builders.find_builder_id("raw")
    body = await (await client.get("/api/v2/builders/raw", headers=JSON)).json()
    assert [b["name"] for b in body["builders"]] == ["raw"]
    assert (await client.get("/api/v2/builders/raw_inline")).status == 404


async def test_a_patch_body_is_sent_as_null(
    client: TestClient[web.Request, web.Application], database: Database
) -> None:
    # bytes have no JSON form: null, as Buildbot's encoder sends them
    ssid = await database.sourcestamps.find_sourcestamp_id(
        branch="main",
        revision="abc",
        repository="r",
        project="p",
        codebase="",
        patch_body=b"--- a\n+++ b\n",
        patch_level=1,
        patch_author="me",
        patch_comment="c",
    )
    for headers in (JSON, {}):
        resp = await client.get(f"/api/v2/sourcestamps/{ssid}", headers=headers)
        assert resp.status == 200
        [stamp] = (await resp.json(content_type=None))["sourcestamps"]
        assert stamp["patch"]["body"] is None
        assert stamp["patch"]["author"] == "me"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_a_method_the_api_does_not_serve_is_a_405_in_its_error_shape(
    client: TestClient[web.Request, web.Application], method: str
) -> None:
    """Like every other error of /api/v2, a JSON ``{"error": ...}`` naming the method and the
    path (aiohttp's own answer is the plain text "405: Method Not Allowed"). Buildbot answers
    400 "invalid HTTP method"; 405 with Allow is HTTP's code for it, and the body is the same
    shape."""
    # /api/v2 itself takes no POST (control actions go to the resources under it)
    for path, allowed, words in (
        ("/api/v2/masters/1", "GET,HEAD,POST", "GET, HEAD or POST"),
        ("/api/v2", "GET,HEAD", "GET or HEAD"),
    ):
        resp = await client.request(method, path)
        assert resp.status == 405
        assert resp.headers["Allow"] == allowed
        assert await resp.json(content_type=None) == {
            "error": f"invalid HTTP method {method} for {path}: use {words}"
        }
    # a POST where only GET is served names what is
    resp = await client.post("/api/v2")
    assert resp.status == 405 and resp.headers["Allow"] == "GET,HEAD"
    # the master serves on
    assert (await client.get("/api/v2/masters/1")).status == 200

"""POST /api/v2/forceschedulers/<name> (JSON-RPC force) against a running master."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.master.www import control
from buildyard.testing.postgres import free_port

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory())]
c['schedulers'] = [schedulers.ForceScheduler(
    name="force", builderNames=["b"],
    properties=[util.IntParameter(name="count", default=1)],
)]
"""


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[str, BuildMaster]]:
    basedir = tmp_path / "master"
    basedir.mkdir()
    www = free_port()
    (basedir / "master.cfg").write_text(CONFIG.format(port=free_port(), www=www))
    m = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(m.db)
    await m.start()
    try:
        yield f"http://127.0.0.1:{www}/api/v2", m
    finally:
        await m.stop()


async def _post(url: str, body: Any, *, raw: bytes | io.BytesIO | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        if raw is not None:
            resp = await session.post(url, data=raw, headers={"Content-Type": "application/json"})
        else:
            resp = await session.post(url, json=body)
        async with resp:
            return resp.status, await resp.json()


def _rpc(**params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "force", "id": 7, "params": params}


async def test_force_adds_a_buildset_and_bad_requests_get_clear_errors(
    api: tuple[str, BuildMaster],
) -> None:
    url, m = api
    builderid = await m.data.updates.find_builder_id("b")
    status, reply = await _post(
        f"{url}/forceschedulers/force", _rpc(builderid=builderid, reason="because", count="3")
    )
    assert status == 200, reply
    bsid, brids = reply["result"]
    assert reply["id"] == 7
    assert list(brids) == [str(builderid)]
    buildset = await m.db.buildsets.get_buildset(bsid)
    assert buildset is not None
    assert "because" in (buildset.reason or "")
    props = await m.db.buildsets.get_buildset_properties(bsid)
    assert props["count"] == (3, "Force Build Form")
    assert props["scheduler"] == ("force", "Scheduler")

    # a field the scheduler refuses: 400, naming the field
    status, reply = await _post(
        f"{url}/forceschedulers/force", _rpc(builderid=builderid, count="x")
    )
    assert status == 400
    assert reply["error"]["code"] == -32602
    assert "count" in str(reply["error"]["message"])
    # an unknown scheduler, an unknown method, bad JSON, a batch
    status, reply = await _post(f"{url}/forceschedulers/nope", _rpc(builderid=builderid))
    assert (status, reply["error"]["code"]) == (404, -32600)
    status, reply = await _post(
        f"{url}/forceschedulers/force",
        {"jsonrpc": "2.0", "method": "stop", "id": 1, "params": {}},
    )
    assert (status, reply["error"]["code"]) == (501, -32601)
    status, reply = await _post(f"{url}/forceschedulers/force", None, raw=b"{not json")
    assert (status, reply["error"]["code"]) == (400, -32700)
    status, reply = await _post(f"{url}/forceschedulers/force", [_rpc()])
    assert (status, reply["error"]["code"]) == (400, -32600)
    # nothing else was added
    assert len(await m.db.buildsets.get_buildsets()) == 1


async def test_a_deeply_nested_or_oversized_body_is_a_client_error(
    api: tuple[str, BuildMaster],
) -> None:
    url, m = api
    # the JSON parser recurses once per level: 100,000 levels is a parse error, not a crash
    deep = b"[" * 100_000 + b"]" * 100_000
    status, reply = await _post(f"{url}/forceschedulers/force", None, raw=deep)
    assert (status, reply["error"]["code"]) == (400, -32700), reply
    assert "nested too deeply" in reply["error"]["message"]
    deep_in_params = b'{"jsonrpc": "2.0", "method": "force", "id": 1, "params": {"x": '
    deep_in_params += b"{" * 50_000 + b"}" * 50_000 + b"}}"
    status, reply = await _post(f"{url}/forceschedulers/force", None, raw=deep_in_params)
    assert (status, reply["error"]["code"]) == (400, -32700), reply
    # over the 1 MiB a request body may have: 413, in the JSON-RPC shape
    big = json.dumps(_rpc(builderid=1, reason="x" * (1024 * 1024))).encode()
    status, reply = await _post(f"{url}/forceschedulers/force", None, raw=io.BytesIO(big))
    assert status == 413, reply
    assert reply["error"]["code"] == -32600
    assert "1048576" in reply["error"]["message"]
    assert await m.db.buildsets.get_buildsets() == []


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("reason", {"text": "x"}, "'reason' must be a string, number, boolean"),
        ("count", [[1]], "'count' must be a string, number, boolean"),
        ("branch", {"a": 1}, "'branch'"),
        ("owner", {"a": 1}, "'owner'"),
        # the scheduler's fields check their own types, naming the field
        ("reason", 5, "reason: must be a string, not int"),
        ("branch", 5, "branch: must be a string, not int"),
        ("count", True, "count: must be a string, an integer or a number, not bool"),
    ],
)
async def test_a_value_of_the_wrong_type_is_refused_naming_the_parameter(
    api: tuple[str, BuildMaster], field: str, value: Any, named: str
) -> None:
    url, m = api
    builderid = await m.data.updates.find_builder_id("b")
    status, reply = await _post(
        f"{url}/forceschedulers/force", _rpc(builderid=builderid, **{field: value})
    )
    assert (status, reply["error"]["code"]) == (400, -32602), reply
    assert named in str(reply["error"]["message"])
    assert await m.db.buildsets.get_buildsets() == []


async def test_a_body_that_never_arrives_is_408(
    api: tuple[str, BuildMaster], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers that promise 100 bytes, then 10 of them: the handler does not wait forever."""
    monkeypatch.setattr(control, "BODY_TIMEOUT", 0.5)
    url, m = api
    port = int(url.split(":")[2].split("/")[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /api/v2/forceschedulers/force HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n" + b'{"jsonrpc"'
        )
        await writer.drain()
        async with asyncio.timeout(30):
            status = await reader.readline()
            head = await reader.readuntil(b"\r\n\r\n")
        assert status.split()[1] == b"408", status + head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        reply = json.loads(await reader.readexactly(length))
        assert reply["error"]["code"] == -32600
        assert "did not arrive within 0.5 s" in reply["error"]["message"]
    finally:
        writer.close()
    assert await m.db.buildsets.get_buildsets() == []


async def test_a_lone_surrogate_is_refused_naming_where_it_is(api: tuple[str, BuildMaster]) -> None:
    """JSON may escape half of a UTF-16 pair ("\\ud800"), which is no text: the answer names
    the parameter that holds it, not only the codec that failed, and nothing is stored."""
    url, m = api
    builderid = await m.data.updates.find_builder_id("b")
    for params, where in (
        (b'{"builderid": %d, "reason": "a\\ud800b"}', "'reason'"),
        (b'{"builderid": %d, "tags": ["ok", "\\udfff"]}', "'tags[1]'"),
        (b'{"builderid": %d, "\\ud800": "x"}', "a parameter name"),
    ):
        body = b'{"jsonrpc": "2.0", "method": "force", "id": 7, "params": ' + params % builderid
        status, reply = await _post(f"{url}/forceschedulers/force", None, raw=body + b"}")
        assert (status, reply["error"]) == (
            400,
            {
                "code": -32602,
                "message": f"{where} holds a lone UTF-16 surrogate, which is not text",
            },
        ), reply
    assert await m.db.buildsets.get_buildsets() == []

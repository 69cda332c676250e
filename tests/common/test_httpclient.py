"""The shared HTTP client: a whole address is fetched only on the client's own server, so its
credentials never go to a host, port or scheme an answer named."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from buildyard.common.httpclient import HttpClient, HttpError
from buildyard.testing.postgres import free_port


@pytest.mark.parametrize(
    ("url", "same"),
    [
        ("https://api.example.org/repos/x?page=2", True),
        ("https://API.example.org:443/repos/x", True),
        ("http://api.example.org/repos/x", False),  # plain http
        ("https://api.example.org:8443/repos/x", False),  # another port
        ("https://evil.example/repos/x", False),  # another host
        ("https://api.example.org.evil.example/x", False),
        ("https://api.example.org:notaport/x", False),
    ],
)
def test_same_origin(url: str, same: bool) -> None:
    assert HttpClient("https://api.example.org/v3").same_origin(url) is same


async def _server(seen: list[str | None]) -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def two_servers() -> AsyncIterator[tuple[str, str, list[str | None], list[str | None]]]:
    home_seen: list[str | None] = []
    other_seen: list[str | None] = []
    home, home_url = await _server(home_seen)
    other, other_url = await _server(other_seen)
    try:
        yield home_url, other_url, home_seen, other_seen
    finally:
        await home.cleanup()
        await other.cleanup()


async def test_whole_address_on_another_port_is_refused_without_sending(
    two_servers: tuple[str, str, list[str | None], list[str | None]],
) -> None:
    home_url, other_url, home_seen, other_seen = two_servers
    client = HttpClient(home_url, auth=("ann", "sekrit"), retry_delays=())
    try:
        assert (await client.get(f"{home_url}/page2")).ok
        with pytest.raises(HttpError) as refused:
            await client.get(f"{other_url}/page2?token=sekrit")
    finally:
        await client.close()
    assert home_seen == ["Basic YW5uOnNla3JpdA=="]
    assert other_seen == []
    assert f"{other_url} is not the server of this client" in str(refused.value)
    assert "sekrit" not in str(refused.value)

"""Ids taken from Gerrit events or build properties stay what they are where they are sent:
one URL path segment each in the REST paths (the requests carry credentials), and only a
change number in the ssh command the Gerrit server runs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog
from aiohttp import web

from buildyard.master.changes.base import ChangeSourceContext
from buildyard.master.changes.gerrit import GerritChangeSource, _EventsLog
from buildyard.master.reporters.gerrit_verify_status import GerritVerifyStatusPush
from buildyard.master.reporters.httpclient import HttpClient
from buildyard.testing.postgres import free_port


@contextlib.asynccontextmanager
async def raw_paths() -> AsyncIterator[tuple[str, list[str]]]:
    """A server answering 404 to anything; the raw (still quoted) paths it was asked."""
    seen: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(status=404, text="no")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_event_ids_are_quoted_in_the_files_path() -> None:
    async with raw_paths() as (url, seen):
        files = await _EventsLog("src", url + "/a", None).files("1/../../config?x=", "2#3")
    assert files == []
    assert seen == ["/a/changes/1%2F..%2F..%2Fconfig%3Fx=/revisions/2%233/files/"]


async def test_property_ids_are_quoted_in_the_verification_path() -> None:
    reporter = GerritVerifyStatusPush("http://unused", auth=None)
    reporter.verbose = False
    async with raw_paths() as (url, seen):
        reporter._http = HttpClient(url, retry_delays=())
        try:
            await reporter.createStatus("p~main~I1/../../x", "1?y", "check", 1)
        finally:
            await reporter._http.close()
    assert seen == [
        "/a/changes/p~main~I1%2F..%2F..%2Fx/revisions/1%3Fy/verify-status~verifications"
    ]


@pytest.mark.parametrize("change", ["1; touch /tmp/pwned", "--help", "12 34", "١٢", 1.5, None])
async def test_a_change_that_is_no_number_never_reaches_the_ssh_command(
    ctx: ChangeSourceContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: object,
) -> None:
    ran = tmp_path / "ran"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    ssh = bindir / "ssh"
    ssh.write_text(f'#!/bin/sh\necho "$@" >> {ran}\nexit 1\n')
    ssh.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    config = GerritChangeSource("gerrit.example.org", "ci", get_files=True)
    service = config.make_service(config.name, ctx)
    await service._settings()
    with structlog.testing.capture_logs() as logs:
        assert await service.get_files(change, 2) == ["unknown"]
    [failed] = [e for e in logs if e["event"] == "gerrit_files_failed"]
    assert "not a number" in failed["error"]
    assert not ran.exists()
    # a number does
    assert await service.get_files("12345", 2) == ["unknown"]
    assert "gerrit query 12345 --format JSON" in ran.read_text()

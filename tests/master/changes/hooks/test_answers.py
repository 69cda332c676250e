"""The hooks' answers are plain text a browser will not sniff (their messages quote the
request), and a request is refused before its body is read, or when its body is slow."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from buildyard.master.www import hooks as www_hooks
from tests.master.changes.hooks.conftest import hook_master

SCRIPT = "<script>alert(document.cookie)</script>"


async def _raw(url: str, head: str, body: bytes = b"") -> tuple[str, asyncio.StreamWriter]:
    """Send ``head`` (then ``body``) on a new connection; the status line that comes back
    within a generous bound (the writer stays open: the body may be unfinished)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), timeout=20)
    return status.decode().strip(), writer


async def test_an_unknown_dialect_is_not_echoed_as_html(tmp_path: Path) -> None:
    async with hook_master(tmp_path, "") as hooks:
        path = "/change_hook/%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E"
        async with hooks.http.get(hooks.url + path) as response:
            text = await response.text()
            assert response.status == 400
            assert response.content_type == "text/plain"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "<script" not in text
        assert text == "The dialect specified is an unknown dialect, not whitelisted in change_hook"
        # a plain name is quoted as Buildbot does (the side-by-side tests compare it)
        async with hooks.http.post(hooks.url + "/change_hook/gitea", data=b"{}") as response:
            assert response.content_type == "text/plain"
            assert await response.text() == (
                "The dialect specified, 'gitea', wasn't whitelisted in change_hook"
            )


async def test_a_known_dialects_refusal_is_plain_text_and_bounded(tmp_path: Path) -> None:
    dialects = "c['www']['change_hook_dialects'] = {'github': {'secret': 's3'}}\n"
    async with hook_master(tmp_path, dialects) as hooks:
        headers = {
            "X-GitHub-Event": "push",
            "Content-Type": "application/json",
            "X-Hub-Signature": SCRIPT + "x" * 1000,
        }
        async with hooks.http.post(
            hooks.url + "/change_hook/github", data=b"{}", headers=headers
        ) as response:
            text = await response.text()
            assert response.status == 400
            assert response.content_type == "text/plain"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert text.startswith("Wrong signature format: " + SCRIPT)
        assert len(text) <= www_hooks.MAX_ECHO + 3


async def test_an_unconfigured_dialect_is_refused_before_its_body(tmp_path: Path) -> None:
    async with hook_master(
        tmp_path, "c['www']['change_hook_dialects'] = {'base': True}\n"
    ) as hooks:
        # a body announced and never sent: the answer does not wait for it
        head = (
            "POST /change_hook/github HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: 20000000\r\n"
        )
        status, writer = await _raw(hooks.url, head)
        writer.close()
        assert status.startswith("HTTP/1.1 400")


async def test_a_slow_body_is_a_408(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(www_hooks, "BODY_TIMEOUT", 0.5, raising=False)
    async with hook_master(
        tmp_path, "c['www']['change_hook_dialects'] = {'base': True}\n"
    ) as hooks:
        head = (
            "POST /change_hook/base HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n"
        )
        status, writer = await _raw(hooks.url, head, b"comments=")
        writer.close()
        assert status.startswith("HTTP/1.1 408")

"""A server in the test process shaped like the Telegram Bot API
(https://core.telegram.org/bots/api): ``POST /bot<token>/<method>`` with a JSON body, answered
``{"ok": true, "result": ...}``; a wrong token gets 401 ``{"ok": false, "error_code": 401,
"description": "Unauthorized"}``. ``getUpdates`` is long polling: it answers the queued updates
whose ``update_id`` is at least ``offset`` as soon as there are some, else an empty list after
``timeout`` seconds. Every request is recorded."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from buildyard.testing.postgres import free_port


@dataclasses.dataclass
class Call:
    method: str
    body: Any


@dataclasses.dataclass
class FakeTelegram:
    token: str
    username: str = "yard_bot"
    url: str = ""
    calls: list[Call] = dataclasses.field(default_factory=list)
    updates: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # raw answers (status, text) given to the next getUpdates requests, before the real ones
    poll_answers: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    changed: asyncio.Condition = dataclasses.field(default_factory=asyncio.Condition)
    _next_update: int = 100
    _next_message: int = 1

    async def push(self, update: dict[str, Any]) -> int:
        """Queue an update (its ``update_id`` is given); returns the id."""
        async with self.changed:
            update_id = self._next_update
            self._next_update += 1
            self.updates.append({"update_id": update_id, **update})
            self.changed.notify_all()
        return update_id

    async def message(self, text: str, *, user: dict[str, Any], chat: dict[str, Any]) -> int:
        msg_id = self._next_message
        self._next_message += 1
        return await self.push(
            {"message": {"message_id": msg_id, "from": user, "chat": chat, "date": 0, "text": text}}
        )

    def sent(self, start: int = 0) -> list[dict[str, Any]]:
        return [c.body for c in self.calls[start:] if c.method == "sendMessage"]

    async def wait_for(self, predicate: Callable[[], bool], *, within: float = 60) -> None:
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(predicate)

    async def wait_sent(
        self, count: int, *, start: int = 0, within: float = 60
    ) -> list[dict[str, Any]]:
        await self.wait_for(lambda: len(self.sent(start)) >= count, within=within)
        return self.sent(start)[:count]

    async def _handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        body: Any
        if request.content_type == "multipart/form-data":  # an upload (setWebhook's certificate)
            form = await request.post()
            # a file part (ours) or a plain binary part (Buildbot's): its bytes either way
            body = {
                k: v.file.read()
                if isinstance(v, web.FileField)
                else bytes(v)
                if isinstance(v, bytearray)
                else v
                for k, v in form.items()
            }
        else:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return web.json_response(
                    {"ok": False, "error_code": 400, "description": "Bad Request: bad JSON"},
                    status=400,
                )
        if token != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        async with self.changed:
            self.calls.append(Call(method, body))
            self.changed.notify_all()
        if method == "getMe":
            return _ok({"id": 777, "is_bot": True, "first_name": "Yard", "username": self.username})
        if method == "getUpdates":
            return await self._get_updates(body)
        if method == "sendMessage":
            async with self.changed:
                msg_id = self._next_message
                self._next_message += 1
            return _ok(
                {
                    "message_id": msg_id,
                    "chat": {"id": body.get("chat_id")},
                    "date": 0,
                    "text": body.get("text"),
                }
            )
        if method == "setWebhook" and not body.get("url"):
            # (the Bot API takes only https addresses; the tests' masters serve http)
            return web.json_response(
                {"ok": False, "error_code": 400, "description": "Bad Request: bad webhook"},
                status=400,
            )
        if method == "setWebhook" and "secret_token" in body:
            secret = body["secret_token"]
            if not isinstance(secret, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
                # the Bot API: 1-256 characters, only A-Z, a-z, 0-9, _ and -
                return web.json_response(
                    {"ok": False, "error_code": 400,
                     "description": "Bad Request: secret token contains unallowed characters"},
                    status=400,
                )  # fmt: skip
        if method in ("answerCallbackQuery", "setMyCommands", "deleteWebhook", "setChatMenuButton",
                      "setWebhook",
                      "editMessageReplyMarkup", "editMessageText", "deleteMessage"):  # fmt: skip
            return _ok(True)
        return web.json_response(
            {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
        )

    async def _get_updates(self, body: dict[str, Any]) -> web.Response:
        if self.poll_answers:
            status, text = self.poll_answers.pop(0)
            return web.Response(status=status, text=text, content_type="application/json")
        offset = int(body.get("offset") or 0)
        timeout = float(body.get("timeout") or 0)

        def pending() -> list[dict[str, Any]]:
            return [u for u in self.updates if u["update_id"] >= offset]

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self.changed:
                await self.changed.wait_for(lambda: bool(pending()))
        return _ok(pending())


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


@contextlib.asynccontextmanager
async def fake_telegram(token: str) -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram(token)
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", fake._handle)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()

"""An HTTP server in the test process that records what reporters send: shaped like GitHub's
commit statuses API (``POST /repos/{owner}/{repo}/statuses/{sha}``), GitLab's, Bitbucket
Cloud's and Server's, Gerrit's verify-status plugin, Zulip's Buildbot integration, Pushover
and Pushjet (each path, method and success status as their APIs document), and like a plain
endpoint for HttpStatusPush (``POST /hook``). ``answers`` sets what it replies, in order."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from buildyard.testing.postgres import free_port


@dataclasses.dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    query: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Recorder:
    url: str = ""
    requests: list[Request] = dataclasses.field(default_factory=list)
    # (status, text) answered to the next requests, then 201/200 with "{}"
    answers: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    # per path prefix: answered before ``answers`` to the requests whose path starts with it
    path_answers: dict[str, list[tuple[int, str]]] = dataclasses.field(default_factory=dict)
    arrived: asyncio.Condition = dataclasses.field(default_factory=asyncio.Condition)
    # requests whose path starts with ``hold_prefix`` get no answer until ``release`` is set
    hold_prefix: str | None = None
    release: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def wait_for(self, count: int, *, within: float = 120) -> list[Request]:
        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    async def _record(self, request: web.Request, ok: int | None = None) -> web.Response:
        raw = await request.read()
        if request.content_type == "application/x-www-form-urlencoded":
            body: Any = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        else:
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
        recorded = Request(
            request.method, request.path, dict(request.headers), body, dict(request.query)
        )
        async with self.arrived:
            self.requests.append(recorded)
            self.arrived.notify_all()
        if self.hold_prefix is not None and request.path.startswith(self.hold_prefix):
            await self.release.wait()
        queue = next(
            (q for prefix, q in self.path_answers.items() if request.path.startswith(prefix) and q),
            self.answers,
        )
        if queue:
            status, text = queue.pop(0)
            return web.Response(status=status, text=text)
        if ok == 204:
            return web.Response(status=204)
        if ok is None:
            ok = 201 if "/statuses/" in request.path else 200
        return web.json_response({}, status=ok)

    def _answering(self, ok: int) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return await self._record(request, ok)

        return handler

    async def _gitlab_project(self, request: web.Request) -> web.Response:
        await self._record(request)
        if request.match_info["name"] == "octo/hello":
            return web.json_response({"id": 77})
        return web.json_response({"message": "404 Project Not Found"}, status=404)

    async def _oauth(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"access_token": "bearer-tok"})


@contextlib.asynccontextmanager
async def recording_server() -> AsyncIterator[Recorder]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_post("/repos/{owner}/{repo}/statuses/{sha}", recorder._record)
    app.router.add_post("/repos/{owner}/{repo}/issues/{n}/comments", recorder._record)
    app.router.add_post("/hook", recorder._record)
    # GitLab: the project id lookup, then statuses
    app.router.add_get("/api/v4/projects/{name:.+}", recorder._gitlab_project)
    app.router.add_post("/api/v4/projects/{id}/statuses/{sha}", recorder._record)
    # Bitbucket Cloud: the OAuth token, then statuses
    app.router.add_post("/oauth", recorder._oauth)
    app.router.add_post(
        "/2.0/repositories/{owner}/{repo}/commit/{sha}/statuses/build", recorder._record
    )
    # Bitbucket Server: build statuses (204), Core API builds (204), pull request comments (201)
    app.router.add_post("/rest/build-status/1.0/commits/{sha}", recorder._answering(204))
    app.router.add_post(
        "/rest/api/1.0/projects/{key}/repos/{slug}/commits/{sha}/builds", recorder._answering(204)
    )
    app.router.add_post(
        "/rest/api/1.0/projects/{key}/repos/{slug}/pull-requests/{n}/comments",
        recorder._answering(201),
    )
    # Gerrit's verify-status plugin (its verifications are posted under /a/ with Basic auth)
    app.router.add_post(
        "/a/changes/{change}/revisions/{revision}/verify-status~verifications",
        recorder._answering(204),
    )
    # Zulip's Buildbot integration; Pushover; Pushjet
    app.router.add_post("/api/v1/external/buildbot", recorder._answering(200))
    app.router.add_post("/1/messages.json", recorder._answering(200))
    app.router.add_post("/message", recorder._answering(200))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    recorder.url = f"http://127.0.0.1:{port}"
    try:
        yield recorder
    finally:
        await runner.cleanup()

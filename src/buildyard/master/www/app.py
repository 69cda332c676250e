"""The www service (``master.www``): an aiohttp server on ``c['www']['port']``.

``port`` takes Buildbot's forms: an integer (all interfaces) or a strports string
``tcp:PORT[:interface=ADDR]``. Without ``c['www']`` no web server runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import web

from buildyard.common.ports import Listen, parse_port
from buildyard.common.service import Service
from buildyard.master.data.api import DataAPI
from buildyard.master.www import rest

log = structlog.get_logger(__name__)


def make_app(*, data: DataAPI, title: str) -> web.Application:
    app = web.Application()
    app[rest.DATA_API] = data

    async def index(_request: web.Request) -> web.Response:
        return web.Response(
            text=f"{title}: a buildyard master. REST API: /api/v2/ (the web UI comes later).\n"
        )

    app.add_routes([web.get("/", index), *rest.routes()])
    return app


class WWWService(Service):
    def __init__(self, *, data: DataAPI) -> None:
        super().__init__("www")
        self._data = data
        self._runner: web.AppRunner | None = None
        self._listen: Listen | None = None
        self._title = "buildyard"
        self.port: int | None = None

    async def reconfigure(self, www: Mapping[str, Any], *, title: str) -> None:
        """Serve on ``www['port']``, restarting the listener only when the address changed.

        The new listener is bound before the old one closes, so a port that cannot be had
        (OSError) leaves the current one serving.
        """
        listen = parse_port(www["port"]) if www.get("port") is not None else None
        if listen == self._listen and title == self._title:
            return
        if listen is None or not self.running:
            await self._close()
            self._listen, self._title = listen, title
            return
        runner = web.AppRunner(make_app(data=self._data, title=title), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host=listen.host, port=listen.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        await self._close()
        self._runner, self._listen, self._title = runner, listen, title
        sockets = runner.addresses
        self.port = int(sockets[0][1]) if sockets else listen.port
        log.info(
            "www_listening",
            host=listen.host or "*",
            port=self.port,
            url=f"http://{listen.host or 'localhost'}:{self.port}/",
        )

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self.port = None

    async def stop_service(self) -> None:
        await self._close()
        self._listen = None

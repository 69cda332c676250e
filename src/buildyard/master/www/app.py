"""The www service (``master.www``): an aiohttp server on ``c['www']['port']``.

``port`` takes Buildbot's forms: an integer (all interfaces) or a strports string
``tcp:PORT[:interface=ADDR]``. Without ``c['www']`` no web server runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import web

from buildyard.common.errors import ConfigError
from buildyard.common.service import Service
from buildyard.master.data.api import DataAPI
from buildyard.master.www import rest

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Listen:
    host: str | None
    port: int


def parse_port(port: Any) -> Listen:
    """Buildbot's www port forms -> where to listen."""
    if isinstance(port, int) and not isinstance(port, bool):
        return Listen(host=None, port=port)
    if isinstance(port, str):
        if port.isdigit():
            return Listen(host=None, port=int(port))
        parts = port.split(":")
        if parts[0] == "tcp" and len(parts) >= 2 and parts[1].isdigit():
            host = None
            for extra in parts[2:]:
                key, _, value = extra.partition("=")
                if key != "interface":
                    raise ConfigError(f"www port {port!r}: unknown option {key!r}")
                host = value
            return Listen(host=host, port=int(parts[1]))
    raise ConfigError(f"www port {port!r}: expected an integer or 'tcp:PORT[:interface=ADDR]'")


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
        self._site: web.TCPSite | None = None
        self._listen: Listen | None = None
        self._title = "buildyard"
        self.port: int | None = None

    async def reconfigure(self, www: Mapping[str, Any], *, title: str) -> None:
        """Serve on ``www['port']`` (restarting the listener only when the address changed)."""
        listen = parse_port(www["port"]) if www.get("port") is not None else None
        if listen == self._listen and title == self._title:
            return
        await self._close()
        self._listen, self._title = listen, title
        if listen is None or not self.running:
            return
        self._runner = web.AppRunner(make_app(data=self._data, title=title), access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host=listen.host, port=listen.port)
        await self._site.start()
        sockets = self._runner.addresses
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
        self._runner = self._site = None
        self.port = None

    async def stop_service(self) -> None:
        await self._close()
        self._listen = None

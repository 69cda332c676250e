"""The master's own web UI, served at ``/`` when ``c['www']['ui']`` is not set.

Hand-written static files (``static/``: ``index.html``, ES modules, a stylesheet) with no build
step: the browser runs them as they are. They read ``/api/v2`` and follow ``/ws``, as any
client does, so nothing else is needed of the server. ``index.html`` has ``c['title']``
(HTML-escaped) in place of ``{{title}}``; every other file is served under ``/static/`` with
its content type. The files are read once, when the routes are made (at each reconfiguration
of the web server), and only those files are served: no path from a request reaches the disk.

``/config`` is Buildbot's frontend config as JSON (as Buildbot serves it beside its own UI):
the UI reads its ``user`` entry (who is logged in, ``{"anonymous": true}`` if nobody) and its
``auth`` entry (the plugin's name: ``NoAuth`` has no login) to show the user, or a "Log in"
link, in its top bar.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from buildyard.master.www import auth

STATIC = Path(__file__).parent / "static"
# module scripts are only run when served with a JavaScript type
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}
# browsers revalidate (cheap: the files are small) so an upgraded master's UI is seen at once
CACHE_CONTROL = "no-cache"


Config = Callable[[web.Request], Mapping[str, Any]]


def routes(
    *, title: str, static: Path = STATIC, config: Config | None = None
) -> list[web.AbstractRouteDef]:
    """``/`` (the index, with ``title``), ``/static/<file>`` for the files of ``static`` and
    ``/config``: what ``config`` gives for a request (its user's), or without it the title,
    the authentication plugin's entry and the request's user."""
    index = (static / "index.html").read_text(encoding="utf-8")
    index = index.replace("{{title}}", html.escape(title))
    files = {
        path.name: (path.read_bytes(), CONTENT_TYPES[path.suffix])
        for path in sorted(static.iterdir())
        if path.is_file() and path.name != "index.html" and path.suffix in CONTENT_TYPES
    }

    async def serve_index(_request: web.Request) -> web.Response:
        return web.Response(
            text=index,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": CACHE_CONTROL},
        )

    async def serve_file(request: web.Request) -> web.Response:
        found = files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound(text="no such file")
        body, content_type = found
        charset = "utf-8" if content_type.startswith("text/") else None
        return web.Response(
            body=body,
            content_type=content_type,
            charset=charset,
            headers={"Cache-Control": CACHE_CONTROL},
        )

    def minimal_config(request: web.Request) -> Mapping[str, Any]:
        plugin = request.app.get(auth.AUTH)
        return {
            "title": title,
            "auth": plugin.getConfigDict() if plugin is not None else {"name": "NoAuth"},
            "user": dict(auth.user(request)),
        }

    get_config = config or minimal_config

    async def serve_config(request: web.Request) -> web.Response:
        # it names the user: never kept by a shared cache
        return web.json_response(
            get_config(request), headers={"Cache-Control": "private,max-age=0"}
        )

    return [
        web.get("/", serve_index),
        web.get("/static/{name}", serve_file),
        web.get("/config", serve_config),
    ]

"""Buildbot's web UI (buildbot-www 4.3.0) served by the master (docs/rest-api.md, "The web UIs").

With ``c['www']['ui']`` set (:mod:`buildyard.common.ui_assets`), ``/`` is the package's
``index.html`` with the frontend config injected where its placeholder comment is, the files
beside it (``/assets/...``, ``/icon.png``, ...) are served as they are, ``/config`` gives the
same config as JSON and ``/api`` the API's address. The UI routes with ``#``, so nothing else
is needed of the server. ``c['www']['plugins']`` names Buildbot UI plugins (waterfall_view,
console_view, grid_view, ...): their files are served under ``/plugins/<name>/`` from their
installed packages (:func:`buildyard.common.ui_assets.locate_plugin`) and the config lists them.
The config's ``buildbotURL`` must be the address the browser uses
(``c['buildbotURL']``), or the UI warns on its home page.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

import buildyard

PLACEHOLDER = " <!-- BUILDBOT_CONFIG_PLACEHOLDER -->"
# the API version the UI is written against: it reads this entry
BUILDBOT_VERSION = "4.3.0"
# c['www'] keys the UI reads as they are, when they are plain JSON
PASSED_THROUGH = ("ui_default_config", "project_widgets", "default_page", "theme")


def frontend_config(
    *,
    title: str,
    title_url: str,
    buildbot_url: str,
    multi_master: bool,
    www: Mapping[str, Any],
    auth: Mapping[str, Any] | None = None,
    plugins: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What ``window.buildbotFrontendConfig`` holds; ``auth`` is the authentication plugin's
    entry, and ``user`` (anonymous here) is replaced by each request's user. ``plugins``: the
    UI plugins served (name -> their ``c['www']['plugins']`` settings); the UI loads each from
    ``plugins/<name>/scripts.js``."""
    config: dict[str, Any] = {
        "title": title,
        "titleURL": title_url,
        "buildbotURL": buildbot_url,
        "multiMaster": multi_master,
        "versions": [
            ["buildyard", buildyard.__version__],
            ["Python", platform.python_version()],
            ["Buildbot", BUILDBOT_VERSION],
        ],
        "auth": dict(auth) if auth is not None else {"name": "NoAuth", "oauth2": False},
        "avatar_methods": [],
        "user": {"anonymous": True},
        "plugins": {name: _json_or_empty(value) for name, value in (plugins or {}).items()},
        "ui_default_config": {},
        "port": www.get("port"),
    }
    # c['www']['versions']: the user's own (name, version) pairs, after the master's
    extra = www.get("versions")
    if isinstance(extra, list | tuple):
        config["versions"] += [
            [str(part) for part in pair] for pair in extra if isinstance(pair, tuple | list)
        ]
    for key in PASSED_THROUGH:
        value = www.get(key)
        if value is None:
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        config[key] = value
    return config


def _json_or_empty(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return {}
    return value if value is not None else {}


def _script(config: Mapping[str, Any]) -> str:
    # ASCII-only JSON; "</" escaped so no value can end the script element
    text = json.dumps(config, ensure_ascii=True).replace("</", "<\\/")
    return f'<script id="bb-config">window.buildbotFrontendConfig = {text};</script>'


def routes(
    static: Path,
    config: Callable[[web.Request], Mapping[str, Any]],
    plugins: Mapping[str, Path] | None = None,
) -> list[web.AbstractRouteDef]:
    """The UI's routes, for files under ``static`` (the directory of its index.html);
    ``config`` gives the frontend config for a request (its user's); ``plugins``: each UI
    plugin's ``static`` directory, served under ``/plugins/<name>/``."""
    template = (static / "index.html").read_text(encoding="utf-8")
    if PLACEHOLDER not in template:
        raise ValueError(f"{static / 'index.html'} has no {PLACEHOLDER.strip()!r} to replace")

    async def index(request: web.Request) -> web.Response:
        return web.Response(
            text=template.replace(PLACEHOLDER, _script(config(request)), 1),
            content_type="text/html",
            headers={"Cache-Control": "private,max-age=0"},  # it names the user
        )

    async def frontend(request: web.Request) -> web.Response:
        return web.json_response(config(request))

    async def api(request: web.Request) -> web.Response:
        url = str(config(request)["buildbotURL"])
        return web.json_response({"api_versions": {"v2": f"{url}api/v2"}})

    def file(path: Path) -> Callable[[web.Request], Any]:
        async def serve(_request: web.Request) -> web.FileResponse:
            return web.FileResponse(path)

        return serve

    found: list[web.AbstractRouteDef] = [
        web.get("/", index),
        web.get("/config", frontend),
        web.get("/api", api),
    ]
    for name, where in sorted((plugins or {}).items()):
        found.append(web.static(f"/plugins/{name}", where))
    for path in sorted(static.iterdir()):
        if path.is_file() and path.name != "index.html":
            found.append(web.get(f"/{path.name}", file(path)))
        elif path.is_dir():
            found.append(web.static(f"/{path.name}", path))
    return found

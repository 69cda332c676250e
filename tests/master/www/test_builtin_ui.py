"""The built-in UI's files served at / when c['www']['ui'] is not set: the index (with the
escaped title), every static file with its content type, and 404 for anything else; /config,
which tells the UI who is logged in."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from buildyard.common.clock import SystemClock
from buildyard.master.data.api import DataAPI
from buildyard.master.db.connector import Database
from buildyard.master.www import builtin_ui
from buildyard.master.www.app import make_app
from buildyard.master.www.auth import COOKIE, Sessions, UserPasswordAuth

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(database: Database) -> AsyncIterator[Client]:
    app = make_app(data=DataAPI(db=database), title="Yard <b>&")
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


async def test_index_is_the_ui_with_the_escaped_title(client: Client) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = await resp.text()
    assert "<title>Yard &lt;b&gt;&amp;</title>" in html
    assert "{{title}}" not in html
    assert '<script type="module" src="./static/app.js"></script>' in html
    # the REST API still answers beside it
    assert (await client.get("/api/v2/builders")).status == 200


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript"),
        ("api.js", "text/javascript"),
        ("build.js", "text/javascript"),
        ("builder.js", "text/javascript"),
        ("ansi.js", "text/javascript"),
        ("dom.js", "text/javascript"),
        ("session.js", "text/javascript"),
        ("style.css", "text/css"),
    ],
)
async def test_static_files_have_their_content_types(
    client: Client, name: str, content_type: str
) -> None:
    resp = await client.get(f"/static/{name}")
    assert resp.status == 200
    assert resp.content_type == content_type
    assert await resp.read() == (builtin_ui.STATIC / name).read_bytes()


async def test_every_module_imported_is_served(client: Client) -> None:
    # the modules import each other by relative URL: each must exist in the package
    for path in builtin_ui.STATIC.glob("*.js"):
        for imported in re.findall(r'from "\./([^"]+)"', path.read_text(encoding="utf-8")):
            assert (await client.get(f"/static/{imported}")).status == 200, (path.name, imported)


@pytest.mark.parametrize(
    "path", ["/static/nothing.js", "/static/index.html", "/static/../app.py", "/nothing"]
)
async def test_unknown_files_are_404(client: Client, path: str) -> None:
    assert (await client.get(path)).status == 404


async def test_config_says_the_user_is_anonymous_without_authentication(client: Client) -> None:
    resp = await client.get("/config")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "private,max-age=0"
    config = await resp.json()
    assert config["user"] == {"anonymous": True}
    assert config["auth"]["name"] == "NoAuth"
    assert config["title"] == "Yard <b>&"


async def test_config_names_the_logged_in_user(database: Database) -> None:
    sessions = Sessions("s" * 32, clock=SystemClock())
    app = make_app(
        data=DataAPI(db=database),
        title="t",
        authentication=UserPasswordAuth({"alice": "pw"}),
        sessions=sessions,
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        anonymous = await (await c.get("/config")).json()
        assert anonymous["user"] == {"anonymous": True}
        # a password plugin: the UI offers a login
        assert anonymous["auth"]["name"] == "UserPasswordAuth"
        login = await c.post(
            "/auth/login",
            data={"username": "alice", "password": "pw", "redirect": "/"},
            allow_redirects=False,
        )
        assert login.status == 303
        token = login.cookies[COOKIE].value
        c.session.cookie_jar.clear()  # only the Cookie headers below count
        resp = await c.get("/config", headers={"Cookie": f"{COOKIE}={token}"})
        assert (await resp.json())["user"] == {
            "username": "alice",
            "email": "alice",
            "groups": [],
        }
        forged = await c.get("/config", headers={"Cookie": f"{COOKIE}={token}x"})
        assert (await forged.json())["user"] == {"anonymous": True}

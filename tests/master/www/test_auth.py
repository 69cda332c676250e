"""Web authentication on real masters over HTTP: login and logout with UserPasswordAuth and
HTPasswdAuth (bcrypt, apr1 and SHA-1 lines), wrong passwords refused with a 401, the session
cookie and what /config says of the user, RemoteUserAuth from a proxy's header, and the
configuration errors of the plugins."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import pytest_asyncio

from buildyard.common.clock import SystemClock
from buildyard.common.errors import ConfigErrors
from buildyard.master.config.loader import load_master_config
from buildyard.master.www import htpasswd
from buildyard.master.www.auth import COOKIE, Sessions
from buildyard.testing.masters import Running, running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.stock import buildbot_site_packages

# the tests of the UserPasswordAuth master share it (and its event loop)
MODULE = pytest.mark.asyncio(loop_scope="module")

UI = str(buildbot_site_packages() / "buildbot_www")
BODY = """
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory())]
c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
c['buildbotURL'] = "http://127.0.0.1:{port}/"
c['www'] = {{'port': {port}, 'ui': {ui!r}, 'auth': {auth}}}
"""


class Site:
    def __init__(self, running: Running, port: int, http: aiohttp.ClientSession) -> None:
        self.running, self.http = running, http
        self.base = f"http://127.0.0.1:{port}"

    async def login(
        self, user: str, password: str, redirect: str | None = None
    ) -> aiohttp.ClientResponse:
        """GET /auth/login with HTTP Basic credentials, not following the redirect."""
        url = f"{self.base}/auth/login" + (f"?redirect={redirect}" if redirect else "")
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        async with self.http.get(
            url, headers={"Authorization": f"Basic {basic}"}, allow_redirects=False
        ) as resp:
            await resp.read()
            return resp

    async def session(self, user: str, password: str) -> str:
        resp = await self.login(user, password)
        assert resp.status == 302, resp.status
        return resp.cookies[COOKIE].value

    async def config(self, token: str | None = None, **headers: str) -> dict[str, Any]:
        if token is not None:
            headers["Cookie"] = f"{COOKIE}={token}"
        async with self.http.get(f"{self.base}/config", headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            found: dict[str, Any] = await resp.json()
            return found


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def users(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    """A master with UserPasswordAuth (a dict; one password given as bytes)."""
    port = free_port()
    auth = "util.UserPasswordAuth({'homer': 'doh!', 'marge': b'hm\\xc3\\xa9'})"
    body = BODY.format(port=port, ui=UI, auth=auth)
    tmp = tmp_path_factory.mktemp("users")
    async with running_master(tmp, body) as running, aiohttp.ClientSession() as http:
        yield Site(running, port, http)


@MODULE
async def test_login_sets_a_session_cookie_and_redirects(users: Site) -> None:
    resp = await users.login("homer", "doh!", redirect="/api/v2/builders")
    assert resp.status == 302
    assert resp.headers["Location"] == "/api/v2/builders"
    morsel = resp.cookies[COOKIE]
    assert morsel["httponly"] and morsel["path"] == "/"
    assert int(morsel["max-age"]) == 7 * 24 * 3600  # Buildbot's default: a week

    config = await users.config(morsel.value)
    assert config["user"] == {"username": "homer", "email": "homer", "groups": []}
    assert config["auth"]["name"] == "UserPasswordAuth" and config["auth"]["oauth2"] is False
    # the page the UI loads carries the same user
    async with users.http.get(
        f"{users.base}/", headers={"Cookie": f"{COOKIE}={morsel.value}"}
    ) as page:
        assert '"username": "homer"' in await page.text()

    # a bytes password (UTF-8) works too; no redirect argument goes to /
    marge = await users.login("marge", "hm\u00e9")
    assert (marge.status, marge.headers["Location"]) == (302, "/")
    assert (await users.config(marge.cookies[COOKIE].value))["user"]["username"] == "marge"


@MODULE
async def test_the_cookie_is_signed_with_the_secret_kept_in_the_database(users: Site) -> None:
    token = await users.session("homer", "doh!")
    state = users.running.master.db.state
    objectid = await state.get_object_id("www", "buildbot.www.service.WWWService")
    secret = await state.get_state(objectid, "session_secret")
    assert Sessions(secret, clock=SystemClock()).decode(token) == {
        "username": "homer",
        "email": "homer",
        "groups": [],
    }
    assert Sessions("another", clock=SystemClock()).decode(token) is None


@MODULE
@pytest.mark.parametrize(
    ("user", "password"), [("homer", "wrong"), ("nobody", "doh!"), ("homer", "")]
)
async def test_a_wrong_password_is_refused_with_401(users: Site, user: str, password: str) -> None:
    resp = await users.login(user, password)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="buildbot"'
    assert COOKIE not in resp.cookies


@MODULE
async def test_anonymous_and_forged_sessions(users: Site) -> None:
    assert (await users.config())["user"] == {"anonymous": True}
    token = await users.session("homer", "doh!")
    header, payload, signature = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["user_info"]["username"] = "marge"
    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    for bad in (f"{header}.{body}.{signature}", "garbage", token[:-2], "a.b.\u00e9", "\u00e9.b.c"):
        assert (await users.config(bad))["user"] == {"anonymous": True}


@MODULE
async def test_the_login_form(users: Site) -> None:
    async with users.http.get(f"{users.base}/auth/login?redirect=/x") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
    assert '<form method="post" action="/auth/login">' in page
    assert 'name="redirect" value="/x"' in page

    form = {"username": "homer", "password": "doh!", "redirect": "/#/builders"}
    url = f"{users.base}/auth/login"
    async with users.http.post(url, data=form, allow_redirects=False) as resp:
        assert (resp.status, resp.headers["Location"]) == (303, "/#/builders")
        token = resp.cookies[COOKIE].value
    assert (await users.config(token))["user"]["username"] == "homer"

    async with users.http.post(
        url, data={**form, "password": "nope"}, allow_redirects=False
    ) as resp:
        assert resp.status == 401
        assert "Wrong username or password" in await resp.text()
        assert COOKIE not in resp.cookies


@MODULE
async def test_redirects_stay_on_this_server(users: Site) -> None:
    # browsers drop tabs and newlines from an address and read a backslash as a slash
    for target in (
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/%09/evil.example",
        "/%0a/evil.example",
        "/x\\/evil.example",
    ):
        resp = await users.login("homer", "doh!", redirect=target)
        assert resp.headers["Location"] == "/", target
        async with users.http.get(
            f"{users.base}/auth/logout?redirect={target}", allow_redirects=False
        ) as out:
            assert out.headers["Location"] == "/", target


@MODULE
async def test_a_login_form_of_another_site_is_refused(users: Site) -> None:
    form = {"username": "homer", "password": "doh!", "redirect": "/"}
    url = f"{users.base}/auth/login"
    async with users.http.post(
        url, data=form, headers={"Origin": "https://evil.example"}, allow_redirects=False
    ) as resp:
        assert resp.status == 403
        assert COOKIE not in resp.cookies
    async with users.http.post(
        url, data=form, headers={"Origin": users.base}, allow_redirects=False
    ) as resp:
        assert resp.status == 303
        assert COOKIE in resp.cookies


@MODULE
async def test_logout_clears_the_cookie(users: Site) -> None:
    token = await users.session("homer", "doh!")
    async with users.http.get(
        f"{users.base}/auth/logout?redirect=/api/v2/builders",
        headers={"Cookie": f"{COOKIE}={token}"},
        allow_redirects=False,
    ) as resp:
        assert (resp.status, resp.headers["Location"]) == (302, "/api/v2/builders")
        cleared = resp.cookies[COOKIE]
    assert cleared.value == "" and cleared["max-age"] == "0"


@MODULE
async def test_a_forced_build_is_owned_by_the_user(users: Site) -> None:
    token = await users.session("homer", "doh!")
    body = {"jsonrpc": "2.0", "method": "force", "id": 1, "params": {"owner": "someone else"}}
    async with users.http.post(
        f"{users.base}/api/v2/forceschedulers/force",
        json=body,
        headers={"Cookie": f"{COOKIE}={token}"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        bsid = (await resp.json())["result"][0]
    props = await users.running.master.db.buildsets.get_buildset_properties(bsid)
    assert props["owner"][0] == "homer"


# -- HTPasswdAuth --------------------------------------------------------------------------------


def _sha1(password: str) -> str:
    return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()


async def test_htpasswd_logins(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(b"b-pass", bcrypt.gensalt(rounds=4)).decode()
    path.write_text(
        "# written by htpasswd\n"
        f"bee:{hashed.replace('$2b$', '$2y$', 1)}\n"  # as `htpasswd -B` writes it
        # `openssl passwd -apr1 -salt abcdefgh 'doh!'`, as `htpasswd -m` writes it
        "apr:$apr1$abcdefgh$XuOZU6wBy5ChMKOY9vVN61\n"
        f"sha:{_sha1('s-pass')}\n"
    )
    body = BODY.format(port=port, ui=UI, auth=f"util.HTPasswdAuth({str(path)!r})")
    async with running_master(tmp_path, body) as running, aiohttp.ClientSession() as http:
        site = Site(running, port, http)
        for user, password in (("bee", "b-pass"), ("apr", "doh!"), ("sha", "s-pass")):
            token = await site.session(user, password)
            assert (await site.config(token))["user"]["username"] == user
            assert (await site.login(user, password + "x")).status == 401
        assert (await site.login("nobody", "b-pass")).status == 401
        assert (await site.config())["auth"]["name"] == "HTPasswdAuth"

        # the file is read at each login: a user added later logs in without a reconfig
        assert (await site.login("late", "l-pass")).status == 401
        with path.open("a") as f:
            f.write(f"late:{_sha1('l-pass')}\n")
        assert (await site.login("late", "l-pass")).status == 302


async def test_cookie_expiration_time_sets_the_sessions_lifetime(tmp_path: Path) -> None:
    port = free_port()
    auth = "util.UserPasswordAuth({'homer': 'doh!'})"
    body = BODY.format(port=port, ui=UI, auth=auth).replace(
        "'auth': ", "'cookie_expiration_time': __import__('datetime').timedelta(hours=2), 'auth': "
    )
    async with running_master(tmp_path, body) as running, aiohttp.ClientSession() as http:
        resp = await Site(running, port, http).login("homer", "doh!")
        assert resp.status == 302
        assert int(resp.cookies[COOKIE]["max-age"]) == 2 * 3600


async def test_user_password_auth_takes_passwords_from_secrets(tmp_path: Path) -> None:
    """A password given as util.Secret (or an Interpolate of one) is looked up in the secret
    providers at login: the right one logs in, a wrong one is refused, and a user whose
    secret is missing cannot log in while the others can. (Buildbot 4.3.0 accepts such a
    password but compares the Secret object itself, so it never matches.)"""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "bart_pw").write_text("eat-my-shorts\n")
    (secrets_dir / "bart_pw").chmod(0o600)
    port = free_port()
    auth = (
        "util.UserPasswordAuth({'homer': 'doh!', 'bart': util.Secret('bart_pw'), "
        "'lisa': util.Interpolate('%(secret:lisa_pw)s')})"
    )
    body = BODY.format(port=port, ui=UI, auth=auth) + (
        f"c['secretsProviders'] = [secrets.SecretInAFile({str(secrets_dir)!r})]\n"
    )
    async with running_master(tmp_path, body) as running, aiohttp.ClientSession() as http:
        site = Site(running, port, http)
        token = await site.session("bart", "eat-my-shorts")
        assert (await site.config(token))["user"]["username"] == "bart"
        assert (await site.login("bart", "wrong")).status == 401
        assert (await site.login("homer", "doh!")).status == 302  # plain passwords still work
        # lisa's secret does not exist: she cannot log in (logged), nobody else is disturbed
        assert (await site.login("lisa", "")).status == 401
        assert (await site.login("lisa", "anything")).status == 401
        # the password is shown nowhere in what the web serves
        async with http.get(f"{site.base}/config") as resp:
            assert "eat-my-shorts" not in await resp.text()


# -- RemoteUserAuth ------------------------------------------------------------------------------


async def test_remote_user_from_a_header(tmp_path: Path) -> None:
    port = free_port()
    auth = "util.RemoteUserAuth(header=b'X-Remote-User')"
    body = BODY.format(port=port, ui=UI, auth=auth)
    async with running_master(tmp_path, body) as running, aiohttp.ClientSession() as http:
        site = Site(running, port, http)
        config = await site.config(**{"X-Remote-User": "homer@SPRINGFIELD"})
        assert config["user"] == {
            "username": "homer",
            "realm": "SPRINGFIELD",
            "email": "homer",
            "groups": [],
        }
        assert config["auth"]["name"] == "RemoteUserAuth"
        async with http.get(
            f"{site.base}/api/v2/builders", headers={"X-Remote-User": "marge@SPRINGFIELD"}
        ) as resp:
            assert resp.status == 200
        # not through the proxy: no header, or one it would not send
        for headers in ({}, {"X-Remote-User": "no-realm"}, {"REMOTE_USER": "homer@X"}):
            async with http.get(f"{site.base}/api/v2/builders", headers=headers) as resp:
                assert resp.status == 403, headers
                assert "X-Remote-User" in json.loads(await resp.text())["error"]
        body_ = {"jsonrpc": "2.0", "method": "force", "id": 1, "params": {}}
        url = f"{site.base}/api/v2/forceschedulers/force"
        async with http.post(url, json=body_) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"]["code"] == -32600
        assert await running.master.db.buildsets.get_buildsets() == []
        # the header's user owns what it forces
        async with http.post(url, json=body_, headers={"X-Remote-User": "bart@SPRINGFIELD"}) as r:
            assert r.status == 200, await r.text()
            bsid = (await r.json())["result"][0]
        props = await running.master.db.buildsets.get_buildset_properties(bsid)
        assert props["owner"][0] == "bart"


# -- configuration errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ("util.HTPasswdAuth('no-such-file')", "cannot read the htpasswd file"),
        ("util.HTPasswdAuth(42)", "passwdFile must be a path, not 42"),
        ("util.UserPasswordAuth('homer')", "users must be a dict"),
        ("util.UserPasswordAuth([('homer',)])", "('homer',) is not a (user, password) pair"),
        ("util.UserPasswordAuth({'homer': 3})", "the password of 'homer' must be a string"),
        ("util.RemoteUserAuth(headerRegex='(?P<user>.*)')", "has no (?P<username>...) group"),
        ("util.RemoteUserAuth(headerRegex='(')", "is not valid"),
        ("util.UserPasswordAuth({}, realm='x')", "unknown argument 'realm'"),
        ("'homer'", "c['www']['auth'] must be an authentication plugin"),
    ],
)
def test_auth_config_errors(tmp_path: Path, auth: str, message: str) -> None:
    _write_cfg(tmp_path, f"c['www'] = {{'port': 0, 'auth': {auth}}}\n")
    with pytest.raises(ConfigErrors) as caught:
        load_master_config(tmp_path)
    [error] = caught.value.errors
    assert message in error.message
    assert error.location is not None and error.location.file.endswith("master.cfg")


def test_an_htpasswd_line_of_unknown_format_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("plain:secret\n")
    _write_cfg(tmp_path, "c['www'] = {'port': 0, 'auth': util.HTPasswdAuth('pw')}\n")
    with pytest.raises(ConfigErrors) as caught:
        load_master_config(tmp_path)
    [error] = caught.value.errors
    assert "pw:1: the password of 'plain' is in a format" in error.message


def test_buildbot_import_paths(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(f"sha:{_sha1('x')}\n")
    _write_cfg(
        tmp_path,
        "from buildbot.plugins import util as bb\n"
        "from buildbot.www.auth import HTPasswdAuth, NoAuth\n"
        "assert bb.UserPasswordAuth is util.UserPasswordAuth\n"
        "assert NoAuth is util.NoAuth\n"
        "c['www'] = {'port': 0, 'auth': HTPasswdAuth('pw')}\n",
    )
    config = load_master_config(tmp_path)
    assert type(config.www["auth"]).__name__ == "HTPasswdAuth"


def _write_cfg(basedir: Path, www: str) -> None:
    (basedir / "master.cfg").write_text(
        "from buildyard.plugins import *\n"
        "c = BuildmasterConfig = {}\n"
        "c['workers'] = [worker.Worker('w1', 'pw')]\n"
        "c['protocols'] = {'msgpack_experimental_v7': {'port': 0}}\n"
        "c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], "
        "factory=util.BuildFactory())]\n" + www
    )


def test_apr1_matches_openssl() -> None:
    # `openssl passwd -apr1 -salt abcdefgh 'doh!'`
    assert htpasswd.apr1(b"doh!", b"abcdefgh") == "$apr1$abcdefgh$XuOZU6wBy5ChMKOY9vVN61"
    assert htpasswd.check("doh!", "$apr1$abcdefgh$XuOZU6wBy5ChMKOY9vVN61")
    assert not htpasswd.check("doh", "$apr1$abcdefgh$XuOZU6wBy5ChMKOY9vVN61")


def test_bcrypt_reads_72_bytes_of_a_password_as_htpasswd_does() -> None:
    long = "x" * 80
    # htpasswd -B (and bcrypt) hash the first 72 bytes; the binding refuses longer passwords
    hashed = bcrypt.hashpw(long.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
    assert htpasswd.check(long, hashed)
    assert htpasswd.check("x" * 72, hashed)
    assert not htpasswd.check("x" * 71, hashed)

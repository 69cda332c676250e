"""Web login through OAuth2 (GitHubAuth, GitLabAuth, GoogleAuth, BitbucketAuth) on a real master
with a real worker, against a fake provider on loopback shaped like each provider's documented
API (tests/master/www/fake_oauth.py): an HTTP client follows the whole login, redirects and
cookies as a browser does. Checked: the authorize URL's parameters, the token exchange (client
id and secret from a secret provider), the user's details and groups in the session and in
/config, authz roles from those groups (a team allowed to force, another user refused), a
wrong state, a wrong code and a refusal at the provider each refused with a clear page, the
client secret and the tokens never logged nor shown, and the configuration errors.

One master serves the module; each test writes the master.cfg it needs and reconfigures it.
"""

from __future__ import annotations

import ast
import html
import inspect
import json
import ssl
import subprocess
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import structlog

from buildyard.common.errors import ConfigErrors
from buildyard.master.config.loader import load_master_config
from buildyard.master.www import oauth2
from buildyard.master.www.auth import COOKIE
from buildyard.master.www.oauth2 import STATE_COOKIE
from buildyard.testing.masters import Running, running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.stock import buildbot_site_packages
from tests.master.www.fake_oauth import (
    CLIENT_ID,
    CLIENT_SECRET,
    FakeProvider,
    fake_provider,
)

MODULE = pytest.mark.asyncio(loop_scope="module")

BODY = """
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory())]
c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
c['buildbotURL'] = "http://127.0.0.1:{port}/"
c['secretsProviders'] = [secrets.SecretInAFile({secrets!r})]
c['www'] = {{
    'port': 'tcp:{port}:interface=127.0.0.1',
    'auth': {auth},
    'authz': util.Authz(
        allowRules=[util.ForceBuildEndpointMatcher(role="admins")],
        roleMatchers=[util.RolesFromGroups(groupPrefix="{prefix}")],
    ),
}}
"""
MARK = "# -- the test's part --\n"


class Site:
    def __init__(self, running: Running, port: int, fake: FakeProvider, secrets: Path) -> None:
        self.running, self.port, self.fake, self.secrets = running, port, fake, secrets
        self.base = f"http://127.0.0.1:{port}"
        self.cfg = running.basedir / "master.cfg"
        self.header = self.cfg.read_text().split(MARK)[0]

    async def use(self, auth: str, prefix: str = "", prelude: str = "") -> None:
        """Serve ``auth`` (master.cfg's text, after ``prelude``) from now on."""
        body = BODY.format(port=self.port, secrets=str(self.secrets), auth=auth, prefix=prefix)
        self.cfg.write_text(self.header + MARK + prelude + body)
        assert await self.running.master.reconfig()
        self.fake.requests.clear()

    def browser(self) -> aiohttp.ClientSession:
        # a browser's cookie jar: it keeps the cookies of an address like 127.0.0.1
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def login(
        self, http: aiohttp.ClientSession, redirect: str = "/builders/1"
    ) -> aiohttp.ClientResponse:
        """The whole login, redirects followed: the last answer."""
        query = urllib.parse.urlencode({"redirect": redirect})
        async with http.get(f"{self.base}/auth/login?{query}") as resp:
            await resp.read()
            return resp

    async def config(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(f"{self.base}/config") as resp:
            assert resp.status == 200
            found: dict[str, Any] = await resp.json()
            return found

    async def force(self, http: aiohttp.ClientSession) -> aiohttp.ClientResponse:
        body = {"jsonrpc": "2.0", "method": "force", "id": 1, "params": {}}
        async with http.post(f"{self.base}/api/v2/forceschedulers/force", json=body) as resp:
            await resp.read()
            return resp


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with fake_provider() as provider:
        yield provider


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory, fake: FakeProvider) -> AsyncIterator[Site]:
    tmp = tmp_path_factory.mktemp("oauth2")
    secrets = tmp / "secrets"
    secrets.mkdir()
    for name, value in {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}.items():
        (secrets / name).write_text(value + "\n")
        (secrets / name).chmod(0o600)
    port = free_port()
    auth = f"util.GitHubAuth('x', 'y', serverURL={fake.url!r})"
    body = BODY.format(port=port, secrets=str(secrets), auth=auth, prefix="")
    async with running_master(tmp, MARK + body) as running:
        yield Site(running, port, fake, secrets)


GITHUB_V4 = (
    "util.GitHubAuth(util.Secret('client_id'), util.Interpolate('%(secret:client_secret)s'), "
    "serverURL={url!r}, apiVersion=4, getTeamsMembership=True)"
)


@MODULE
async def test_github_v4_login_with_teams_and_authz(site: Site) -> None:
    """sfml's configuration: GitHub's GraphQL API with team memberships; the client id and
    secret are secrets. The team gives the role that may force; another user may not."""
    await site.use(GITHUB_V4.format(url=site.fake.url), prefix="build-team/")
    site.fake.user = "octocat"
    with structlog.testing.capture_logs() as logs:
        async with site.browser() as http:
            # anonymous: /config names the plugin as Buildbot's UI expects it
            config = await site.config(http)
            assert config["user"] == {"anonymous": True}
            assert config["auth"] == {
                "name": "GitHub",
                "oauth2": True,
                "fa_icon": "fa-github",
                "autologin": False,
            }
            # the start: a redirect to the authorize page, with the state's cookie
            async with http.get(
                f"{site.base}/auth/login?redirect=/builders/1", allow_redirects=False
            ) as resp:
                assert resp.status == 302
                location = urllib.parse.urlsplit(resp.headers["Location"])
                assert STATE_COOKIE in resp.cookies
            assert f"{location.scheme}://{location.netloc}" == site.fake.url
            assert location.path == "/login/oauth/authorize"
            params = urllib.parse.parse_qs(location.query)
            assert params["client_id"] == [CLIENT_ID]
            assert params["redirect_uri"] == [f"{site.base}/auth/login"]
            assert params["response_type"] == ["code"]
            assert params["scope"] == ["user:email read:org"]
            state = urllib.parse.parse_qs(params["state"][0])
            assert state["redirect"] == ["/builders/1"]
            assert len(state["nonce"][0]) >= 24

            # POST /auth/login starts a login too, as in Buildbot
            async with http.post(
                f"{site.base}/auth/login?redirect=/builders", allow_redirects=False
            ) as resp:
                assert resp.status == 302
                assert resp.headers["Location"].startswith(f"{site.fake.url}/login/oauth/")

            # the whole login: back at buildbotURL#<route>, logged in
            resp = await site.login(http)
            assert resp.status == 200
            assert [str(r.url).split("?")[0] for r in resp.history] == [
                f"{site.base}/auth/login",
                f"{site.fake.url}/login/oauth/authorize",
                f"{site.base}/auth/login",
            ]
            assert resp.history[-1].headers["Location"] == f"{site.base}/#/builders/1"
            assert {c.key for c in http.cookie_jar} >= {COOKIE}
            user = (await site.config(http))["user"]
            assert user == {
                "full_name": "Mona Octocat",
                "email": "public@example.org",
                "username": "octocat",
                "groups": [
                    "SFML",
                    "build-team",
                    "third-org",
                    "SFML/Core Devs",
                    "SFML/core-devs",
                    "build-team/Admins",
                    "build-team/Release",
                    "build-team/admins",
                    "build-team/release",
                ],
            }
            # the team build-team/admins gives the role "admins": the force is allowed
            forced = await site.force(http)
            assert forced.status == 200
        # the token exchange: the client's id and secret in the form, the code once
        [exchange] = site.fake.seen("/login/oauth/access_token")
        form = urllib.parse.parse_qs(exchange.body)
        assert form["client_id"] == [CLIENT_ID]
        assert form["client_secret"] == [CLIENT_SECRET]
        assert form["grant_type"] == ["authorization_code"]
        assert form["redirect_uri"] == [f"{site.base}/auth/login"]
        # GraphQL: the viewer, then the teams of each organization (the logins as variables)
        queries = site.fake.seen("/api/graphql")
        assert len(queries) == 2
        for request in queries:
            assert request.headers["authorization"].startswith("token tok-")
            assert request.headers["user-agent"].startswith("buildyard/")
        teams = json.loads(queries[1].body)
        assert teams["variables"] == {
            "user": "octocat",
            "o0": "SFML",
            "o1": "build-team",
            "o2": "third-org",
        }

        # another user: logged in, but without the role
        site.fake.user = "visitor"
        async with site.browser() as http:
            assert (await site.login(http)).status == 200
            user = (await site.config(http))["user"]
            assert user["username"] == "visitor"
            assert user["groups"] == ["elsewhere"]
            refused = await site.force(http)
            assert refused.status == 403
        # anonymous: refused too
        async with site.browser() as http:
            assert (await site.force(http)).status == 403
    assert len(await site.running.master.db.buildsets.get_buildsets()) == 1
    _never_logged(logs, site.fake)


@MODULE
async def test_debug_and_a_user_info_provider(site: Site) -> None:
    """``debug=True`` logs the GraphQL queries, the answers and the user's details (never the
    secret nor the token); a ``userInfoProvider`` adds to the details after the login."""
    provider = (
        "from buildbot.www.auth import UserInfoProviderBase\n"
        "class Directory(UserInfoProviderBase):\n"
        "    def getUserInfo(self, username):\n"
        "        return {'email': username + '@corp.example', 'groups': ['admins']}\n"
    )
    auth = (
        f"util.GitHubAuth({CLIENT_ID!r}, {CLIENT_SECRET!r}, serverURL={site.fake.url!r}, "
        "apiVersion=4, debug=True, userInfoProvider=Directory())"
    )
    await site.use(auth, prelude=provider)
    site.fake.user = "visitor"
    with structlog.testing.capture_logs() as logs:
        async with site.browser() as http:
            assert (await site.login(http)).status == 200
            user = (await site.config(http))["user"]
            assert (await site.force(http)).status == 200  # the provider's group is a role
    assert user["email"] == "visitor@corp.example"
    assert user["groups"] == ["admins"]
    events = [e["event"] for e in logs if e["event"].startswith("www_oauth2_")]
    assert events == [
        "www_oauth2_github_graphql_request",
        "www_oauth2_github_graphql_response",
        "www_oauth2_github_user",
        "www_oauth2_login",
    ]
    [request] = [e for e in logs if e["event"] == "www_oauth2_github_graphql_request"]
    assert "viewer" in request["query"]
    _never_logged(logs, site.fake)


def _never_logged(logs: Sequence[Mapping[str, Any]], fake: FakeProvider) -> None:
    """Neither the client secret nor a token nor a code appears in the logs."""
    text = json.dumps(logs, default=str)
    assert CLIENT_SECRET not in text
    assert "tok-" not in text
    for request in fake.requests:
        code = request.query.get("code")
        if code:
            assert code[0] not in text


@MODULE
async def test_github_v3_login(site: Site) -> None:
    """The REST API: the primary verified email, the organizations read page after page."""
    await site.use(
        f"util.GitHubAuth({CLIENT_ID!r}, {CLIENT_SECRET!r}, serverURL={site.fake.url!r})"
    )
    site.fake.user = "octocat"
    async with site.browser() as http:
        assert (await site.login(http)).status == 200
        user = (await site.config(http))["user"]
    assert user == {
        "full_name": "Mona Octocat",
        "email": "mona@example.org",
        "username": "octocat",
        "groups": ["SFML", "build-team", "third-org"],
    }
    paths = [r.path for r in site.fake.requests if r.path.startswith("/api/")]
    assert paths == [
        "/api/v3/user",
        "/api/v3/user/emails",
        "/api/v3/user/orgs",
        "/api/v3/user/orgs",
    ]
    # the token goes in a header, never in a URL
    for request in site.fake.requests:
        assert "access_token" not in request.query
    # a primary email GitHub has not verified is not taken: the public one is
    site.fake.user = "sly"
    async with site.browser() as http:
        assert (await site.login(http)).status == 200
        user = (await site.config(http))["user"]
    assert (user["username"], user["email"], user["groups"]) == ("sly", "sly@example.org", [])


@MODULE
async def test_a_next_page_on_another_server_is_not_read(site: Site) -> None:
    """The user's token goes only to the provider's own server: a next page said to be
    elsewhere is left unread (and logged); the login goes on with the pages read."""
    await site.use(
        f"util.GitHubAuth({CLIENT_ID!r}, {CLIENT_SECRET!r}, serverURL={site.fake.url!r})"
    )
    site.fake.user = "octocat"
    site.fake.next_base = "http://127.0.0.2:9"  # another origin (nothing listens there)
    try:
        with structlog.testing.capture_logs() as logs:
            async with site.browser() as http:
                assert (await site.login(http)).status == 200
                user = (await site.config(http))["user"]
    finally:
        site.fake.next_base = None
    assert user["username"] == "octocat"
    assert "third-org" not in user["groups"] and user["groups"]
    paths = [r.path for r in site.fake.requests if r.path == "/api/v3/user/orgs"]
    assert paths == ["/api/v3/user/orgs"]
    elsewhere = [e for e in logs if e["event"] == "www_oauth2_next_page_elsewhere"]
    assert len(elsewhere) == 1 and "127.0.0.2" in elsewhere[0]["page"]


@MODULE
async def test_gitlab_login(site: Site) -> None:
    await site.use(
        f"util.GitLabAuth({site.fake.url + '/'!r}, {CLIENT_ID!r}, util.Secret('client_secret'))",
        prefix="tools/",
    )
    site.fake.user = "octocat"
    async with site.browser() as http:
        async with http.get(f"{site.base}/auth/login", allow_redirects=False) as resp:
            location = urllib.parse.urlsplit(resp.headers["Location"])
        assert location.path == "/oauth/authorize"
        params = urllib.parse.parse_qs(location.query)
        assert "scope" not in params  # GitLab's default scopes of the application
        assert urllib.parse.parse_qs(params["state"][0]).keys() == {"nonce"}
        resp = await site.login(http, redirect="/")
        assert resp.history[-1].headers["Location"] == f"{site.base}/#/"
        user = (await site.config(http))["user"]
        assert user == {
            "full_name": "Mona Octocat",
            "username": "octocat",
            "email": "mona@example.org",
            "avatar_url": f"{site.fake.url}/avatar/octocat.png",
            "groups": ["SFML", "tools", "tools/ci"],
        }
        # RolesFromGroups(groupPrefix="tools/"): the role "ci", not "admins"
        assert (await site.force(http)).status == 403
    for request in site.fake.seen("/api/v4/user"):
        assert request.headers["authorization"].startswith("Bearer tok-")


# pointed at the fake by a subclass's URLs, Buildbot's attribute names
GOOGLE = """
class MyGoogle(util.GoogleAuth):
    authUri = {url!r} + "/o/oauth2/auth"
    tokenUri = {token!r} + "/o/oauth2/token"
    resourceEndpoint = {url!r} + "/oauth2/v1"
"""

BITBUCKET = """
class MyBitbucket(util.BitbucketAuth):
    authUri = {url!r} + "/site/oauth2/authorize"
    tokenUri = {url!r} + "/site/oauth2/access_token"
    resourceEndpoint = {url!r} + "/2.0"
"""


@MODULE
async def test_google_login(site: Site) -> None:
    """Pointed at the fake by a subclass's URLs (Buildbot's attribute names)."""
    await site.use(
        f"MyGoogle({CLIENT_ID!r}, {CLIENT_SECRET!r}, autologin=True)",
        prelude=GOOGLE.format(url=site.fake.url, token=site.fake.url),
    )
    site.fake.user = "visitor"
    async with site.browser() as http:
        auth = (await site.config(http))["auth"]
        assert auth == {
            "name": "Google",
            "oauth2": True,
            "fa_icon": "fa-google-plus",
            "autologin": True,
        }
        async with http.get(f"{site.base}/auth/login", allow_redirects=False) as resp:
            params = urllib.parse.parse_qs(urllib.parse.urlsplit(resp.headers["Location"]).query)
        assert params["scope"] == [
            "https://www.googleapis.com/auth/userinfo.email "
            "https://www.googleapis.com/auth/userinfo.profile"
        ]
        assert (await site.login(http)).status == 200
        user = (await site.config(http))["user"]
    assert user == {
        "full_name": "Vera Visitor",
        "username": "vera",
        "email": "vera@example.org",
        "avatar_url": f"{site.fake.url}/avatar/visitor.png",
    }


@MODULE
async def test_bitbucket_login(site: Site) -> None:
    await site.use(
        f"MyBitbucket({CLIENT_ID!r}, {CLIENT_SECRET!r})",
        prefix="tools-",
        prelude=BITBUCKET.format(url=site.fake.url),
    )
    site.fake.user = "octocat"
    async with site.browser() as http:
        assert (await site.login(http)).status == 200
        user = (await site.config(http))["user"]
        assert user == {
            "full_name": "Mona Octocat",
            "email": "mona@example.org",
            "username": "octocat",
            "groups": ["sfml-ws", "tools-ws", "third-ws"],  # two pages of workspaces
        }
        assert (await site.force(http)).status == 403  # the role is "ws", not "admins"


@MODULE
async def test_refused_logins(site: Site) -> None:
    """A wrong state, no login under way, a wrong code, a refusal at the provider: each is a
    page saying why, and nobody is logged in."""
    await site.use(
        f"util.GitHubAuth({CLIENT_ID!r}, {CLIENT_SECRET!r}, serverURL={site.fake.url!r})"
    )
    login = f"{site.base}/auth/login"
    with structlog.testing.capture_logs() as logs:
        async with site.browser() as http:
            # no login under way in this browser (a forged callback)
            async with http.get(f"{login}?code=abc&state=nonce%3Dxyz") as resp:
                assert resp.status == 403
                assert "no login under way" in await resp.text()
            # a login under way, but the state sent back is not this browser's
            async with http.get(login, allow_redirects=False) as resp:
                location = urllib.parse.urlsplit(resp.headers["Location"])
            params = urllib.parse.parse_qs(location.query)
            async with http.get(f"{login}?code=abc&state=nonce%3Dsomeone-elses") as resp:
                assert resp.status == 403
                assert "does not match the login this browser started" in await resp.text()
            # the right state, a wrong code: the provider refuses it
            async with http.get(login, allow_redirects=False) as resp:
                location = urllib.parse.urlsplit(resp.headers["Location"])
            params = urllib.parse.parse_qs(location.query)
            query = urllib.parse.urlencode({"code": "wrong", "state": params["state"][0]})
            async with http.get(f"{login}?{query}") as resp:
                assert resp.status == 401
                text = await resp.text()
                assert "GitHub refused the code: The code passed is incorrect or expired." in text
            # the user said no at the provider
            query = urllib.parse.urlencode(
                {"error": "access_denied", "error_description": "The user has denied access."}
            )
            async with http.get(f"{login}?{query}") as resp:
                assert resp.status == 401
                assert "GitHub did not log you in: The user has denied access." in await resp.text()
            assert COOKIE not in {c.key for c in http.cookie_jar}
            assert (await site.config(http))["user"] == {"anonymous": True}
    assert CLIENT_SECRET not in json.dumps(logs, default=str)
    assert {e["event"] for e in logs} >= {
        "www_oauth2_login_failed",
        "www_oauth2_login_refused_by_provider",
    }


@MODULE
async def test_a_wrong_client_secret_and_an_unreachable_provider(site: Site) -> None:
    await site.use(f"util.GitHubAuth({CLIENT_ID!r}, 'not-the-secret', serverURL={site.fake.url!r})")
    async with site.browser() as http:
        resp = await site.login(http)
        assert resp.status == 401
        assert "GitHub refused the code: bad client" in await resp.text()  # no quote to escape
    closed = f"http://127.0.0.1:{free_port()}"
    await site.use(
        f"MyGoogle({CLIENT_ID!r}, {CLIENT_SECRET!r})",
        prelude=GOOGLE.format(url=site.fake.url, token=closed),
    )
    async with site.browser() as http:
        resp = await site.login(http)
        assert resp.status == 502
        text = html.unescape(await resp.text())
        assert f"cannot reach Google's token endpoint ({closed}/o/oauth2/token)" in text
        assert CLIENT_SECRET not in text


@MODULE
async def test_odd_answers_and_routes(site: Site) -> None:
    """An answer the provider's API does not document, and a userInfoProvider that raises,
    are a 502 page naming the problem (the traceback in the log); a route with non-ASCII
    text comes back percent-encoded."""
    provider = (
        "class Failing:\n"
        "    def getUserInfo(self, username):\n"
        "        return {'x': 1} if username != 'visitor' else {}['missing']\n"
    )
    auth = (
        f"util.GitHubAuth({CLIENT_ID!r}, {CLIENT_SECRET!r}, serverURL={site.fake.url!r}, "
        "userInfoProvider=Failing())"
    )
    await site.use(auth, prelude=provider)
    site.fake.user = "broken"
    async with site.browser() as http:
        resp = await site.login(http)
        assert resp.status == 502
        assert "GitHub&#x27;s /user is not a JSON object" in await resp.text()
    site.fake.user = "visitor"
    with structlog.testing.capture_logs() as logs:
        async with site.browser() as http:
            resp = await site.login(http)
            assert resp.status == 502
            assert "KeyError while reading the user from GitHub" in await resp.text()
            assert (await site.config(http))["user"] == {"anonymous": True}
    assert [e["event"] for e in logs if e.get("log_level") == "error"] == ["www_oauth2_login_error"]
    site.fake.user = "octocat"
    async with site.browser() as http:
        resp = await site.login(http, redirect="/builders/é?x=1")
        assert resp.status == 200
        landed = resp.history[-1].headers["Location"]
        assert landed == f"{site.base}/#/builders/%C3%A9?x=1"
        assert (await site.config(http))["user"]["x"] == 1


@MODULE
async def test_a_missing_secret_makes_the_login_unavailable(site: Site) -> None:
    await site.use(
        f"util.GitHubAuth({CLIENT_ID!r}, util.Secret('no_such_secret'), "
        f"serverURL={site.fake.url!r})"
    )
    with structlog.testing.capture_logs() as logs:
        async with site.browser() as http:
            resp = await site.login(http)
            assert resp.status == 503
            assert "clientSecret cannot be read" in await resp.text()
    assert any(e["event"] == "www_oauth2_login_failed" for e in logs)


# -- ssl_verify ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@MODULE
@pytest.mark.parametrize(
    ("ssl_verify", "status"),
    [("True", 502), ("False", 200), ("CA", 200)],
)
async def test_ssl_verify(
    site: Site, certificate: tuple[Path, Path], ssl_verify: str, status: int
) -> None:
    """A provider with a self-signed certificate: refused by default, accepted with
    ssl_verify=False or the path of the certificate to trust."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    verify = repr(str(certificate[0])) if ssl_verify == "CA" else ssl_verify
    with fake_provider(tls=context) as tls_fake:
        auth = (
            f"util.GitLabAuth({tls_fake.url!r}, {CLIENT_ID!r}, {CLIENT_SECRET!r}, "
            f"ssl_verify={verify})"
        )
        await site.use(auth)
        # the browser itself trusts the fake's certificate: only the master's check differs
        jar = aiohttp.CookieJar(unsafe=True)
        connector = aiohttp.TCPConnector(ssl=False)
        async with aiohttp.ClientSession(cookie_jar=jar, connector=connector) as http:
            resp = await site.login(http)
            assert resp.status == status, await resp.text()
            if status == 502:
                assert "certificate verify failed" in await resp.text()
            else:
                assert (await site.config(http))["user"]["username"] == "octocat"


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ("util.GitHubAuth('id', 'secret', apiVersion=5)", "apiVersion must be 3 or 4, not 5"),
        (
            "util.GitHubAuth('id', 'secret', getTeamsMembership=True)",
            "getTeamsMembership=True needs apiVersion=4",
        ),
        ("util.GitHubAuth('id', 'secret', sslVerify=False)", "unknown argument 'sslVerify'"),
        ("util.GitHubAuth('id')", "clientSecret must be a non-empty string or a secret"),
        (
            "util.GitHubAuth('id', 's', serverURL='github.example')",
            "serverURL must be the server's URL",
        ),
        ("util.GitLabAuth(None, 'id', 's')", "instanceUri must be the instance's URL"),
        ("util.GoogleAuth('id', 's', ssl_verify=3)", "ssl_verify must be True, False or the path"),
        ("util.GoogleAuth('id', 's', ssl_verify='/no/such/ca.pem')", "cannot read the CA bundle"),
        ("util.BitbucketAuth('id', 's', autologin='yes')", "autologin must be True or False"),
        (
            "Mine('id', 's')",
            "Mine: overriding getUserInfoFromOAuthClient() is not supported",
        ),
    ],
)
def test_config_errors(tmp_path: Path, auth: str, message: str) -> None:
    _write_cfg(
        tmp_path,
        "class Mine(util.GitHubAuth):\n"
        "    def getUserInfoFromOAuthClient(self, c):\n"
        "        return {}\n"
        f"c['www'] = {{'port': 0, 'auth': {auth}}}\n",
    )
    with pytest.raises(ConfigErrors) as caught:
        load_master_config(tmp_path)
    assert message in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)


def test_an_oauth2_login_without_buildbot_url_is_warned(tmp_path: Path) -> None:
    _write_cfg(tmp_path, "c['www'] = {'port': 0, 'auth': util.GoogleAuth('id', 's')}\n")
    (warning,) = load_master_config(tmp_path).warnings
    assert "c['buildbotURL'] is not set: GoogleAuth sends users back to" in warning
    (tmp_path / "master.cfg").write_text(
        (tmp_path / "master.cfg").read_text() + "c['buildbotURL'] = 'https://ci.example/'\n"
    )
    assert load_master_config(tmp_path).warnings == ()


def _write_cfg(basedir: Path, text: str) -> None:
    (basedir / "master.cfg").write_text(
        "from buildyard.plugins import *\n"
        "c = BuildmasterConfig = {}\n"
        "c['workers'] = [worker.Worker('w1', 'pw')]\n"
        "c['protocols'] = {'msgpack_experimental_v7': {'port': 0}}\n"
        "c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], "
        "factory=util.BuildFactory())]\n" + text
    )


def test_buildbot_import_paths(tmp_path: Path) -> None:
    """``from buildbot.www.oauth2 import GitHubAuth`` and the plugins' ``util`` names, with
    Buildbot's positional arguments (sfml's master.cfg)."""
    _write_cfg(
        tmp_path,
        "from buildbot.plugins import util\n"
        "from buildbot.www.oauth2 import GitHubAuth, GitLabAuth\n"
        "c['www'] = {'port': 0, 'auth': GitHubAuth('id', 'secret', apiVersion=4, "
        "getTeamsMembership=True)}\n"
        "assert isinstance(c['www']['auth'], util.GitHubAuth)\n"
        "GitLabAuth('https://gitlab.example/', 'id', 'secret')\n",
    )
    config = load_master_config(tmp_path)
    auth = config.www["auth"]
    assert type(auth).__name__ == "GitHubAuth"
    assert "'secret'" not in repr(auth)


def _buildbot_parameters() -> dict[str, list[str]]:
    """The parameters of Buildbot 4.3.0's OAuth2 plugins' own constructors, read from its
    source (not imported), in order; Google's and Bitbucket's are the base class's."""
    source = (buildbot_site_packages() / "buildbot" / "www" / "oauth2.py").read_text()
    found: dict[str, list[str]] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                found[node.name] = [a.arg for a in item.args.args[1:]]
    found["GoogleAuth"] = found["BitbucketAuth"] = found["OAuth2Auth"]
    return found


@pytest.mark.parametrize("name", ["GitHubAuth", "GitLabAuth", "GoogleAuth", "BitbucketAuth"])
def test_the_arguments_are_buildbots(name: str) -> None:
    """Buildbot's positional arguments in Buildbot's order, and every keyword it takes (its
    own, the base class's, and AuthBase's ``userInfoProvider``)."""
    buildbot = _buildbot_parameters()
    theirs = buildbot[name]
    signature = inspect.signature(getattr(oauth2, name).__init__)
    ours = [p for p in list(signature.parameters)[1:] if p != "kwargs"]
    assert ours[: len(theirs)] == theirs
    accepted = set(ours)
    if "kwargs" in signature.parameters:  # handed on to the base class
        accepted |= set(inspect.signature(oauth2.OAuth2Auth.__init__).parameters)
    assert {*theirs, *buildbot["OAuth2Auth"], "userInfoProvider"} <= accepted

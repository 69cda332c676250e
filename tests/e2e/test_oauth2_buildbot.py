"""OAuth2 login side by side with stock Buildbot 4.3.0: the same master.cfg (GitHubAuth pointed
at a fake GitHub Enterprise by ``serverURL``, GitLabAuth by ``instanceUri``, BitbucketAuth by a
subclass's URLs) run by a Buildbot master and by a buildyard master, each logged into by an
HTTP client that follows the whole login as a browser does (tests/master/www/fake_oauth.py
plays the provider). GoogleAuth is left out to keep the test short: its user reading is
Bitbucket's base class path, and its scope is checked in tests/master/www/test_oauth2.py.

Compared: the authorize redirect's parameters, the token exchange's form, and the user's
details that /config shows after the login. Where buildyard differs on purpose the test says
so: its ``state`` also carries a nonce (checked against a cookie: a login the browser did not
start is refused), the token goes in a header (Buildbot puts GitLab's and Bitbucket's in the
URL), and lists are read past their first page.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from buildyard.testing.processes import end_popen
from tests.e2e.test_change_hooks_buildbot import Master, _start
from tests.master.www.fake_oauth import CLIENT_ID, CLIENT_SECRET, FakeProvider, fake_provider

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("buildbot-oauth2")]

CONFIG = """\
from buildbot.plugins import *

c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {{'pb': {{'port': 'tcp:{worker_port}:interface=127.0.0.1'}}}}
c['builders'] = [
    util.BuilderConfig(name='b', workernames=['w1'], factory=util.BuildFactory()),
]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b'])]
c['buildbotURL'] = 'http://127.0.0.1:{www_port}/'
PRELUDE
c['www'] = {{'port': 'tcp:{www_port}:interface=127.0.0.1', 'auth': AUTH}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotNetUsageData'] = None
"""

AUTHS = {
    "github_v3": "util.GitHubAuth({id!r}, {secret!r}, serverURL={url!r})",
    "github_v4_teams": (
        "util.GitHubAuth({id!r}, {secret!r}, serverURL={url!r}, apiVersion=4, "
        "getTeamsMembership=True)"
    ),
    "gitlab": "util.GitLabAuth({url!r}, {id!r}, {secret!r})",
    "bitbucket": "MyBitbucket({id!r}, {secret!r})",
}

# Bitbucket's plugin (as Google's) takes no server: a subclass points it at the fake, with the
# class attributes both Buildbot and buildyard read
PRELUDES = {
    "bitbucket": """
class MyBitbucket(util.BitbucketAuth):
    authUri = {url!r} + "/site/oauth2/authorize"
    tokenUri = {url!r} + "/site/oauth2/access_token"
    resourceEndpoint = {url!r} + "/2.0"
""",
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with fake_provider() as provider:
        yield provider


@pytest.fixture(scope="module", params=sorted(AUTHS))
def twins(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake: FakeProvider
) -> Iterator[tuple[str, Master, Master]]:
    """A stock Buildbot 4.3.0 master and a buildyard master with the same auth."""
    kind: str = request.param
    auth = AUTHS[kind].format(id=CLIENT_ID, secret=CLIENT_SECRET, url=fake.url)
    prelude = PRELUDES.get(kind, "").format(url=fake.url)
    config = CONFIG.replace("AUTH", auth.replace("{", "{{").replace("}", "}}"))
    config = config.replace("PRELUDE", prelude.replace("{", "{{").replace("}", "}}"))
    root = tmp_path_factory.mktemp(f"oauth2-{kind}")
    buildbot = _start("buildbot", root / "buildbot", config)
    try:
        buildyard = _start("buildyard", root / "buildyard", config)
        try:
            yield kind, buildbot, buildyard
        finally:
            end_popen(buildyard.proc)
    finally:
        end_popen(buildbot.proc)


async def _login(master: Master, fake: FakeProvider) -> dict[str, Any]:
    """The authorize redirect's parameters, the token request's form, where the login ends,
    and the user /config then shows."""
    fake.requests.clear()
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        url = f"{master.url}/auth/login?redirect=/builders/1"
        async with http.get(url, allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()
            location = urllib.parse.urlsplit(resp.headers["Location"])
        async with http.get(url) as resp:
            assert resp.status == 200, await resp.text()
            landed = resp.history[-1].headers["Location"]
        async with http.get(f"{master.url}/config") as resp:
            user = (await resp.json())["user"]
    [token] = [r for r in fake.requests if r.path.endswith(("/access_token", "/token"))]
    return {
        "authorize": f"{location.scheme}://{location.netloc}{location.path}",
        "params": urllib.parse.parse_qs(location.query),
        "token_form": urllib.parse.parse_qs(token.body),
        "landed": landed.replace(master.url, "<base>"),
        "user": user,
        "api": [(r.method, r.path, r.headers.get("authorization", "")[:6]) for r in fake.requests],
    }


@pytest.mark.asyncio
async def test_the_login_side_by_side(
    twins: tuple[str, Master, Master], fake: FakeProvider
) -> None:
    kind, buildbot, buildyard = twins
    fake.user = "octocat"
    theirs = await _login(buildbot, fake)
    ours = await _login(buildyard, fake)

    assert ours["authorize"] == theirs["authorize"]
    # the state: Buildbot's holds the route only; ours the route and a nonce
    their_state = urllib.parse.parse_qs(theirs["params"].pop("state")[0])
    our_state = urllib.parse.parse_qs(ours["params"].pop("state")[0])
    assert their_state == {"redirect": ["/builders/1"]}
    assert our_state["redirect"] == ["/builders/1"]
    assert our_state.keys() == {"redirect", "nonce"}
    redirect_uri = theirs["params"].pop("redirect_uri")
    assert redirect_uri == [f"{buildbot.url}/auth/login"]
    assert ours["params"].pop("redirect_uri") == [f"{buildyard.url}/auth/login"]
    assert ours["params"] == theirs["params"]

    for found, master in ((theirs, buildbot), (ours, buildyard)):
        form = found["token_form"]
        assert form.pop("redirect_uri") == [f"{master.url}/auth/login"]
        assert len(form.pop("code")[0]) == 16
    assert ours["token_form"] == theirs["token_form"]

    # Buildbot 4.3.0 reads the route out of the state with a str key from bytes, never finds
    # it, and lands on buildbotURL; buildyard goes back to the route, as Buildbot means to
    assert theirs["landed"] == "<base>/"
    assert ours["landed"] == "<base>/#/builders/1"

    if kind == "gitlab":
        # Buildbot reads one page of groups (the fake serves two per page); buildyard all
        assert theirs["user"].pop("groups") == ["SFML", "tools"]
        assert ours["user"].pop("groups") == ["SFML", "tools", "tools/ci"]
    elif kind == "bitbucket":
        # Buildbot reads one page of workspaces (two here); buildyard all
        assert theirs["user"].pop("groups") == ["sfml-ws", "tools-ws"]
        assert ours["user"].pop("groups") == ["sfml-ws", "tools-ws", "third-ws"]
    elif kind == "github_v3":
        # Buildbot reads one page of organizations (two here); buildyard all
        assert theirs["user"].pop("groups") == ["SFML", "build-team"]
        assert ours["user"].pop("groups") == ["SFML", "build-team", "third-org"]
    if kind in {"gitlab", "bitbucket"}:
        # Buildbot sends the token in the URL, buildyard in a header
        assert {a for _m, p, a in theirs["api"][2:]} == {""}
        assert {a for _m, p, a in ours["api"][2:]} == {"Bearer"}
    assert ours["user"] == theirs["user"]

"""Web login through an OAuth2 provider: ``util.GitHubAuth``, ``GitLabAuth``, ``GoogleAuth`` and
``BitbucketAuth``, with Buildbot 4.3's arguments and routes.

The flow (the authorization code grant). ``GET /auth/login?redirect=<route>`` sends the
browser to the provider's authorize page with ``client_id``, ``redirect_uri`` (``buildbotURL``
+ ``auth/login``), ``response_type=code``, the provider's ``scope`` and a ``state`` holding the
route to come back to and a random nonce, which a short-lived cookie also holds. The provider
sends the browser back to ``/auth/login?code=...&state=...``: the state must carry the nonce of
this browser's cookie (else the login is refused: a login this browser did not start), the code
is exchanged for a token at the provider's token URL (the client id and secret in the form, as
Buildbot sends them), the token reads the user and their organizations, groups or teams, and
the session cookie of :mod:`.auth` is set as for a password login. The browser then goes to
``buildbotURL#<route>``, as in Buildbot.

What a provider's answers become (``username``, ``email``, ``full_name``, ``groups``,
``avatar_url``) follows Buildbot's plugins; the differences are on purpose and listed in
docs/divergences.md: the state is checked, the token goes in an ``Authorization`` header (never
in a URL), list answers are read page after page, and GitHub's primary email is taken only
once verified.

The client secret and the tokens are never logged nor shown; ``debug=True`` (GitHubAuth) logs
the GraphQL queries, the answers and the user's details.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import secrets
import ssl
import string
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import structlog
from aiohttp import web

import buildyard
from buildyard.common.awaitables import resolve
from buildyard.common.config_object import is_placeholder
from buildyard.common.connections import BODY_TIMEOUT
from buildyard.common.errors import config_error
from buildyard.master.model.properties import (
    Properties,
    RenderError,
    SecretsOnly,
    is_renderable,
    render,
)
from buildyard.master.www.auth import AuthBase, Sessions, start_session

log = structlog.get_logger(__name__)

__all__ = ["BitbucketAuth", "GitHubAuth", "GitLabAuth", "GoogleAuth", "OAuth2Auth"]

#: the cookie holding the nonce of a login under way
STATE_COOKIE = "BuildBotOAuth2State"
#: how long a login may stay at the provider (seconds)
STATE_LIFETIME = 600
#: the time allowed to each request to the provider
TIMEOUT = 30.0
#: the pages read of a list answer (organizations, groups, workspaces)
MAX_PAGES = 10

# methods of Buildbot's plugins that run requests-based code: a master.cfg subclass that
# overrides one cannot be run here
_BUILDBOT_HOOKS = (
    "getLoginURL",
    "verifyCode",
    "createSessionFromToken",
    "getUserInfoFromOAuthClient",
    "get",
    "post",
)


_Answer = tuple[str, str, Mapping[str, str], int]


class LoginFailed(Exception):
    """A login that cannot complete; ``status`` is the HTTP status shown with the message."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


def _page(title: str, message: str, status: int) -> web.Response:
    body = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="icon" href="data:,"></head>
<body><h1>{html.escape(title)}</h1><p class="error">{html.escape(message)}</p>
<p><a href="login">Log in again</a></p></body></html>
"""
    return web.Response(text=body, status=status, content_type="text/html")


def _route(value: object) -> str | None:
    """The UI route to come back to (what goes after ``#``), or None for anything else;
    anything but printable ASCII is percent-encoded."""
    if not isinstance(value, str) or not value or len(value) > 2000:
        return None
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in value):
        return None
    return urllib.parse.quote(value, safe=string.punctuation)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


class OAuth2Auth(AuthBase):
    """The base of the OAuth2 plugins: a provider's URLs are class attributes (Buildbot's
    names), so a master.cfg subclass may point a plugin elsewhere."""

    name: ClassVar[str] = "oauth2"
    faIcon: ClassVar[str] = "not-defined"
    authUri: str | None = None
    tokenUri: str | None = None
    resourceEndpoint: str = ""
    authUriAdditionalParams: ClassVar[Mapping[str, str]] = {}
    tokenUriAdditionalParams: ClassVar[Mapping[str, str]] = {}
    grantType: ClassVar[str] = "authorization_code"
    getTokenUseAuthHeaders: ClassVar[bool] = False

    uses_sessions = True
    handles_login = True
    _secret_arguments = frozenset({"clientSecret"})

    def __init__(
        self,
        clientId: object = None,
        clientSecret: object = None,
        autologin: object = False,
        ssl_verify: object = True,
        userInfoProvider: object = None,
        **unknown: Any,
    ) -> None:
        kind = type(self).__name__
        for name in unknown:
            config_error(f"{kind}: unknown argument {name!r}")
        for name, value in (("clientId", clientId), ("clientSecret", clientSecret)):
            if not (_is_text(value) or is_renderable(value)):
                # the value itself is not shown: a secret put in the wrong place stays unseen
                config_error(
                    f"{kind}: {name} must be a non-empty string or a secret "
                    f"(util.Secret, util.Interpolate), not {type(value).__name__}"
                )
        self.clientId = clientId
        self.clientSecret = clientSecret
        if not isinstance(autologin, bool):
            config_error(f"{kind}: autologin must be True or False, not {autologin!r}")
        self.autologin = bool(autologin)
        self.ssl_verify = ssl_verify
        self._ssl: ssl.SSLContext | bool = True
        if isinstance(ssl_verify, bool):
            self._ssl = ssl_verify
        elif isinstance(ssl_verify, str | Path):
            # as requests' verify: the path of the CA bundle to trust
            try:
                self._ssl = ssl.create_default_context(cafile=str(ssl_verify))
            except (OSError, ssl.SSLError) as exc:
                config_error(
                    f"{kind}: ssl_verify: cannot read the CA bundle {str(ssl_verify)!r}: {exc}"
                )
        else:
            config_error(
                f"{kind}: ssl_verify must be True, False or the path of a CA bundle, "
                f"not {ssl_verify!r}"
            )
        if userInfoProvider is not None and is_placeholder(userInfoProvider):
            userInfoProvider = None  # a stand-in reported its own error
        if userInfoProvider is not None and not callable(
            getattr(userInfoProvider, "getUserInfo", None)
        ):
            config_error(f"{kind}: userInfoProvider must have a getUserInfo(username) method")
            userInfoProvider = None
        self.userInfoProvider = userInfoProvider
        for cls in type(self).__mro__:
            if cls.__module__ == __name__ or cls is AuthBase:
                break
            for hook in _BUILDBOT_HOOKS:
                if hook in vars(cls):
                    config_error(
                        f"{kind}: overriding {hook}() is not supported: Buildbot runs it with a "
                        "requests session, which this server does not have; set the class "
                        "attributes authUri, tokenUri and resourceEndpoint instead"
                    )
        self.loginUri: str | None = None
        self.homeUri: str | None = None

    # -- what the web server and the UI see -------------------------------------------------------

    def bind_url(self, buildbot_url: str) -> None:
        base = buildbot_url if buildbot_url.endswith("/") else buildbot_url + "/"
        self.homeUri = base
        self.loginUri = base + "auth/login"

    def getConfigDict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "oauth2": True,
            "fa_icon": self.faIcon,
            "autologin": self.autologin,
        }

    # -- the routes -------------------------------------------------------------------------------

    async def web_login(self, request: web.Request, sessions: Sessions) -> web.StreamResponse:
        args: dict[str, str] = dict(request.query)
        if request.method == "POST":
            try:
                async with asyncio.timeout(BODY_TIMEOUT):
                    form = await request.post()
            except TimeoutError:
                return _page("Login failed", "the form did not arrive in time", 408)
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
        if "error" in args:
            # the provider sends the browser back without a code: the user said no, or the
            # application is not allowed
            why = args.get("error_description") or args["error"]
            log.warning("www_oauth2_login_refused_by_provider", provider=self.name, why=why)
            response = _page("Login failed", f"{self.name} did not log you in: {why}", 401)
            response.del_cookie(STATE_COOKIE, path="/")
            return response
        code = args.get("code")
        if not code:
            return await self._start(request, args.get("redirect"))
        try:
            route = self._check_state(request, args.get("state"))
            try:
                details = await self.verify_code(code)
            except LoginFailed:
                raise
            except Exception as exc:
                # an answer of a shape the provider's API does not document, or a
                # userInfoProvider that failed (whatever it raised): logged with its traceback
                log.exception("www_oauth2_login_error", provider=self.name)
                raise LoginFailed(
                    f"login failed: {type(exc).__name__} while reading the user from "
                    f"{self.name} (see the master's log)",
                    502,
                ) from exc
        except LoginFailed as exc:
            log.warning("www_oauth2_login_failed", provider=self.name, why=str(exc))
            response = _page("Login failed", str(exc), exc.status)
            response.del_cookie(STATE_COOKIE, path="/")
            return response
        log.info("www_oauth2_login", provider=self.name, user=details.get("username"))
        home = self.homeUri or "/"
        response = web.Response(
            status=302, headers={"Location": f"{home}#{route}" if route else home}
        )
        response.del_cookie(STATE_COOKIE, path="/")
        start_session(request, response, sessions, details)
        return response

    async def _start(self, request: web.Request, redirect: object) -> web.StreamResponse:
        """The redirect to the provider's authorize page, and the state cookie."""
        try:
            url, nonce = await self.login_url(_route(redirect))
        except LoginFailed as exc:
            log.error("www_oauth2_login_unavailable", provider=self.name, why=str(exc))
            return _page("Login unavailable", str(exc), exc.status)
        response = web.Response(status=302, headers={"Location": url})
        response.set_cookie(
            STATE_COOKIE,
            nonce,
            max_age=STATE_LIFETIME,
            path="/",
            httponly=True,
            samesite="Lax",  # sent along when the provider sends the browser back
            secure=request.secure,
        )
        return response

    def _check_state(self, request: web.Request, state: str | None) -> str | None:
        """The route of a state this browser's login started; :class:`LoginFailed` else."""
        expected = request.cookies.get(STATE_COOKIE)
        fields = urllib.parse.parse_qs(state or "")
        given = fields.get("nonce", [""])[0]
        if not expected:
            raise LoginFailed(
                "login refused: this browser has no login under way (it was started more than "
                f"{STATE_LIFETIME // 60} minutes ago, or elsewhere); log in again",
                403,
            )
        if not given or not secrets.compare_digest(given.encode(), expected.encode()):
            raise LoginFailed(
                "login refused: the state sent back does not match the login this browser "
                "started; log in again",
                403,
            )
        return _route(fields.get("redirect", [None])[0])

    # -- the provider -----------------------------------------------------------------------------

    async def _setting(self, name: str, value: object) -> str:
        """``clientId`` or ``clientSecret``, rendered (a secret is looked up at each login)."""
        if isinstance(value, str):
            return value
        props = Properties()
        props.build = SecretsOnly(getattr(self, "_secret_lookup", None))
        try:
            rendered = await render(value, props)
        except RenderError as exc:
            raise LoginFailed(f"login unavailable: {name} cannot be read: {exc}", 503) from exc
        if not isinstance(rendered, str) or not rendered:
            raise LoginFailed(
                f"login unavailable: {name} rendered to {type(rendered).__name__}, "
                "not a non-empty string",
                503,
            )
        return rendered

    async def login_url(self, route: str | None) -> tuple[str, str]:
        """The provider's authorize URL for a login coming back to ``route``, and its nonce."""
        if self.authUri is None or self.loginUri is None:
            raise LoginFailed(f"login unavailable: {type(self).__name__} has no authorize URL", 503)
        nonce = secrets.token_urlsafe(24)
        state = {"redirect": route, "nonce": nonce} if route else {"nonce": nonce}
        params = {
            "client_id": await self._setting("clientId", self.clientId),
            "redirect_uri": self.loginUri,
            "response_type": "code",
            "state": urllib.parse.urlencode(state),
            **self.authUriAdditionalParams,
        }
        query = urllib.parse.urlencode(sorted(params.items()))
        return f"{self.authUri}?{query}", nonce

    def _client(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
            headers={"User-Agent": f"buildyard/{buildyard.__version__}"},
            connector=aiohttp.TCPConnector(ssl=self._ssl),
        )

    def token_headers(self, token: str) -> dict[str, str]:
        """How the token goes along with the provider's API requests."""
        return {"Authorization": f"Bearer {token}"}

    async def verify_code(self, code: str) -> dict[str, Any]:
        """The details of the user whose browser came back with ``code``."""
        if self.tokenUri is None or self.loginUri is None:
            raise LoginFailed(f"login unavailable: {type(self).__name__} has no token URL", 503)
        client_id = await self._setting("clientId", self.clientId)
        client_secret = await self._setting("clientSecret", self.clientSecret)
        form = {"redirect_uri": self.loginUri, "code": code, "grant_type": self.grantType}
        basic: aiohttp.BasicAuth | None = None
        if self.getTokenUseAuthHeaders:
            basic = aiohttp.BasicAuth(client_id, client_secret)
        else:
            form.update({"client_id": client_id, "client_secret": client_secret})
        form.update(self.tokenUriAdditionalParams)
        async with self._client() as http:
            answer = await self._call(
                http,
                "POST",
                self.tokenUri,
                what="token endpoint",
                data=form,
                auth=basic,
                headers={"Accept": "application/json"},
            )
            token = _token_fields(answer)
            error = token.get("error")
            if not error and answer[3] >= 300:
                error = f"{answer[3]} without an OAuth2 error"
            if error:
                why = token.get("error_description") or error
                raise LoginFailed(f"login failed: {self.name} refused the code: {why}", 401)
            access = token.get("access_token")
            if not isinstance(access, str) or not access:
                raise LoginFailed(
                    f"login failed: {self.name}'s token endpoint answered without an access_token",
                    502,
                )
            details = await self.user_info(_Api(self, http, self.token_headers(access)))
        if not _is_text(details.get("username")):
            raise LoginFailed(f"login failed: {self.name} did not name the user", 502)
        provider = self.userInfoProvider
        if provider is not None:
            get_user_info = getattr(provider, "getUserInfo")  # noqa: B009 - any object with it
            found = await resolve(get_user_info(details["username"]))
            if isinstance(found, Mapping):
                details.update(found)
        return details

    async def _call(
        self,
        http: aiohttp.ClientSession,
        method: str,
        url: str,
        *,
        what: str,
        **kwargs: Any,
    ) -> _Answer:
        """One request to the provider: the answer's text, content type, headers and status."""
        try:
            async with http.request(method, url, **kwargs) as resp:
                text = await resp.text(errors="replace")
                if resp.status in {400, 401} and what == "token endpoint":
                    # OAuth2's error answer (RFC 6749, 5.2): {"error": ..., ...}, read by
                    # the caller
                    return text, resp.content_type, resp.headers, resp.status
                if resp.status >= 300:
                    raise LoginFailed(
                        f"login failed: {self.name}'s {what} ({_where(url)}) answered "
                        f"{resp.status} {resp.reason}",
                        502,
                    )
                return text, resp.content_type, resp.headers, resp.status
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as exc:
            raise LoginFailed(
                f"login failed: cannot reach {self.name}'s {what} ({_where(url)}): "
                f"{type(exc).__name__}: {exc}",
                502,
            ) from exc

    async def user_info(self, api: _Api) -> dict[str, Any]:
        """The user's details, read through ``api`` (each provider's own)."""
        raise LoginFailed(f"login unavailable: {type(self).__name__} reads no user", 503)


def _where(url: str) -> str:
    """A URL without its query (which could carry something private)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _token_fields(answer: _Answer) -> dict[str, Any]:
    """A token endpoint's answer: JSON, or a form (GitHub's without ``Accept``)."""
    text = answer[0]
    try:
        found = json.loads(text)
    except ValueError:
        return {k: v[0] for k, v in urllib.parse.parse_qs(text).items()}
    return found if isinstance(found, dict) else {}


_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class _Api:
    """A provider's API with the user's token: JSON reads, page after page for lists."""

    def __init__(self, plugin: OAuth2Auth, http: aiohttp.ClientSession, headers: dict[str, str]):
        self._plugin = plugin
        self._http = http
        self._headers = headers

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self._plugin.resourceEndpoint + path

    async def get(self, path: str) -> Any:
        text, _type, _headers, _status = await self._plugin._call(
            self._http, "GET", self._url(path), what="API", headers=self._headers
        )
        return _json(self._plugin.name, path, text)

    async def get_pages(self, path: str) -> list[Any]:
        """A list answer, following the ``Link: <...>; rel="next"`` header (GitHub, GitLab)."""
        url = self._url(path)
        items: list[Any] = []
        for _ in range(MAX_PAGES):
            text, _type, headers, _status = await self._plugin._call(
                self._http, "GET", url, what="API", headers=self._headers
            )
            page = _json(self._plugin.name, path, text)
            if not isinstance(page, list):
                raise LoginFailed(
                    f"login failed: {self._plugin.name}'s {_where(url)} is not a list"
                )
            items.extend(page)
            found = _NEXT_LINK.search(headers.get("Link", ""))
            if found is None or not self._same_origin(url, found.group(1)):
                break
            url = urllib.parse.urljoin(url, found.group(1))
        return items

    def _same_origin(self, current: str, following: str) -> bool:
        """Whether a next page's address is on the server of the page that named it: the
        user's token goes only there (a page elsewhere is left unread, and logged)."""
        here = urllib.parse.urlsplit(current)
        there = urllib.parse.urlsplit(urllib.parse.urljoin(current, following))
        if (here.scheme, here.netloc) == (there.scheme, there.netloc):
            return True
        log.warning(
            "www_oauth2_next_page_elsewhere", provider=self._plugin.name, page=_where(following)
        )
        return False

    async def get_values(self, path: str) -> list[Any]:
        """A list answer of Bitbucket's shape: ``values``, and ``next`` for the next page."""
        url: object = self._url(path)
        items: list[Any] = []
        for _ in range(MAX_PAGES):
            if not isinstance(url, str):
                break
            text, _type, _headers, _status = await self._plugin._call(
                self._http, "GET", url, what="API", headers=self._headers
            )
            page = _json(self._plugin.name, path, text)
            values = page.get("values") if isinstance(page, dict) else None
            if not isinstance(values, list):
                raise LoginFailed(
                    f"login failed: {self._plugin.name}'s {_where(url)} has no values"
                )
            items.extend(values)
            following = page.get("next")
            if not isinstance(following, str) or not self._same_origin(url, following):
                break
            url = urllib.parse.urljoin(url, following)
        return items

    async def graphql(self, endpoint: str, query: str, variables: Mapping[str, Any]) -> Any:
        body = {"query": query, "variables": dict(variables)}
        text, _type, _headers, _status = await self._plugin._call(
            self._http, "POST", endpoint, what="GraphQL API", json=body, headers=self._headers
        )
        found = _json(self._plugin.name, endpoint, text)
        if not isinstance(found, dict) or not isinstance(found.get("data"), dict):
            errors = found.get("errors") if isinstance(found, dict) else None
            raise LoginFailed(
                f"login failed: {self._plugin.name}'s GraphQL API answered {errors or found!r:.300}"
            )
        return found


def _json(provider: str, path: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise LoginFailed(
            f"login failed: {provider}'s {_where(path)} did not answer JSON: {text[:200]!r}"
        ) from exc


def _object(provider: str, path: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LoginFailed(f"login failed: {provider}'s {path} is not a JSON object")
    return value


def _field(provider: str, record: object, key: str) -> Any:
    if not isinstance(record, Mapping) or key not in record:
        raise LoginFailed(f"login failed: {provider}'s answer has no {key!r}")
    return record[key]


# -- the providers -------------------------------------------------------------------------------


class GoogleAuth(OAuth2Auth):
    """Google accounts: username (the email's local part), email, full name, picture; no
    groups."""

    name = "Google"
    faIcon = "fa-google-plus"
    authUri = "https://accounts.google.com/o/oauth2/auth"
    tokenUri = "https://accounts.google.com/o/oauth2/token"
    resourceEndpoint = "https://www.googleapis.com/oauth2/v1"
    authUriAdditionalParams = {
        "scope": "https://www.googleapis.com/auth/userinfo.email "
        "https://www.googleapis.com/auth/userinfo.profile"
    }

    async def user_info(self, api: _Api) -> dict[str, Any]:
        found = _object(self.name, "/userinfo", await api.get("/userinfo"))
        email = _field(self.name, found, "email")
        if not _is_text(email):
            raise LoginFailed(f"login failed: {self.name} gave no email")
        return {
            "full_name": found.get("name"),
            "username": email.split("@")[0],
            "email": email,
            "avatar_url": found.get("picture"),
        }


class GitLabAuth(OAuth2Auth):
    """A GitLab instance (``instanceUri``: gitlab.com or self-hosted): username, email, full
    name, avatar; the paths of the user's groups are the groups."""

    name = "GitLab"
    faIcon = "fa-git"

    def __init__(
        self,
        instanceUri: object = None,
        clientId: object = None,
        clientSecret: object = None,
        **kwargs: Any,
    ) -> None:
        if not _is_text(instanceUri) or not str(instanceUri).startswith(("http://", "https://")):
            config_error(f"GitLabAuth: instanceUri must be the instance's URL, not {instanceUri!r}")
            instanceUri = "https://gitlab.invalid"
        base = str(instanceUri).rstrip("/")
        self.instanceUri = base
        self.authUri = f"{base}/oauth/authorize"
        self.tokenUri = f"{base}/oauth/token"
        self.resourceEndpoint = f"{base}/api/v4"
        super().__init__(clientId, clientSecret, **kwargs)

    async def user_info(self, api: _Api) -> dict[str, Any]:
        found = _object(self.name, "/user", await api.get("/user"))
        groups = await api.get_pages("/groups?per_page=100")
        return {
            "full_name": found.get("name"),
            "username": _field(self.name, found, "username"),
            "email": found.get("email"),
            "avatar_url": found.get("avatar_url"),
            "groups": [
                g["path"] for g in groups if isinstance(g, dict) and _is_text(g.get("path"))
            ],
        }


class BitbucketAuth(OAuth2Auth):
    """Bitbucket Cloud: username, primary email, display name; the slugs of the workspaces
    the user is a member of are the groups."""

    name = "Bitbucket"
    faIcon = "fa-bitbucket"
    authUri = "https://bitbucket.org/site/oauth2/authorize"
    tokenUri = "https://bitbucket.org/site/oauth2/access_token"
    resourceEndpoint = "https://api.bitbucket.org/2.0"

    async def user_info(self, api: _Api) -> dict[str, Any]:
        found = _object(self.name, "/user", await api.get("/user"))
        username = _field(self.name, found, "username")
        email = found.get("email")
        for entry in await api.get_values("/user/emails"):
            if isinstance(entry, dict) and entry.get("is_primary") and _is_text(entry.get("email")):
                email = entry["email"]
                break
        workspaces = await api.get_values("/workspaces?role=member")
        return {
            "full_name": found.get("display_name"),
            "email": email,
            "username": username,
            "groups": [
                w["slug"] for w in workspaces if isinstance(w, dict) and _is_text(w.get("slug"))
            ],
        }


_VIEWER = """query {
  viewer {
    login
    name
    email
    organizations(first: 100) { edges { node { login } } }
  }
}"""


def _teams_query(count: int) -> str:
    """One aliased ``organization`` field per organization (``o0``, ``o1``, ...), each the
    teams of the user (``$user``); the logins are variables, never spliced into the text."""
    params = ", ".join(["$user: String!", *(f"$o{i}: String!" for i in range(count))])
    fields = "\n".join(
        f"  o{i}: organization(login: $o{i}) {{"
        " teams(first: 100, userLogins: [$user]) { edges { node { name slug } } } }"
        for i in range(count)
    )
    return f"query({params}) {{\n{fields}\n}}"


class GitHubAuth(OAuth2Auth):
    """GitHub or GitHub Enterprise (``serverURL``): username, primary email, full name; the
    organizations are the groups, and with ``apiVersion=4, getTeamsMembership=True`` also the
    teams, as ``org/team name`` and ``org/team-slug``."""

    name = "GitHub"
    faIcon = "fa-github"
    authUri = "https://github.com/login/oauth/authorize"
    tokenUri = "https://github.com/login/oauth/access_token"
    resourceEndpoint = "https://api.github.com"
    authUriAdditionalParams = {"scope": "user:email read:org"}

    def __init__(  # noqa: PLR0917 - Buildbot's positional arguments
        self,
        clientId: object = None,
        clientSecret: object = None,
        serverURL: object = None,
        autologin: object = False,
        apiVersion: object = 3,
        getTeamsMembership: object = False,
        debug: object = False,
        **kwargs: Any,
    ) -> None:
        graphql: str | None = None
        if serverURL is not None:
            if not _is_text(serverURL) or not str(serverURL).startswith(("http://", "https://")):
                config_error(f"GitHubAuth: serverURL must be the server's URL, not {serverURL!r}")
            else:
                base = str(serverURL).rstrip("/")
                self.authUri = f"{base}/login/oauth/authorize"
                self.tokenUri = f"{base}/login/oauth/access_token"
                self.resourceEndpoint = f"{base}/api/v3"
                graphql = f"{base}/api/graphql"
        self.serverURL = serverURL
        super().__init__(clientId, clientSecret, autologin, **kwargs)
        if apiVersion not in (3, 4) or isinstance(apiVersion, bool):
            config_error(f"GitHubAuth: apiVersion must be 3 or 4, not {apiVersion!r}")
        self.apiVersion = apiVersion
        if not isinstance(getTeamsMembership, bool):
            config_error(
                f"GitHubAuth: getTeamsMembership must be True or False, not {getTeamsMembership!r}"
            )
        elif getTeamsMembership and apiVersion != 4:
            config_error(
                "GitHubAuth: getTeamsMembership=True needs apiVersion=4 (GitHub's team "
                "memberships are read through its GraphQL API)"
            )
        self.getTeamsMembership = bool(getTeamsMembership)
        if not isinstance(debug, bool):
            config_error(f"GitHubAuth: debug must be True or False, not {debug!r}")
        self.debug = bool(debug)
        self.apiResourceEndpoint = graphql or f"{self.resourceEndpoint}/graphql"

    def token_headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"token {token}", "Accept": "application/json"}

    async def user_info(self, api: _Api) -> dict[str, Any]:
        if self.apiVersion == 4:
            return await self._user_info_graphql(api)
        found = _object(self.name, "/user", await api.get("/user"))
        email = found.get("email")
        emails = await api.get("/user/emails")
        for entry in emails if isinstance(emails, list) else []:
            if (
                isinstance(entry, dict)
                and entry.get("primary")
                and entry.get("verified", True)
                and _is_text(entry.get("email"))
            ):
                email = entry["email"]
                break
        orgs = await api.get_pages("/user/orgs?per_page=100")
        return {
            "full_name": found.get("name"),
            "email": email,
            "username": _field(self.name, found, "login"),
            "groups": [
                o["login"] for o in orgs if isinstance(o, dict) and _is_text(o.get("login"))
            ],
        }

    async def _post(self, api: _Api, query: str, variables: Mapping[str, Any]) -> Any:
        if self.debug:
            log.info(
                "www_oauth2_github_graphql_request",
                endpoint=self.apiResourceEndpoint,
                query=query,
                variables=dict(variables),
            )
        found = await api.graphql(self.apiResourceEndpoint, query, variables)
        if self.debug:
            log.info("www_oauth2_github_graphql_response", response=found)
        return found["data"]

    async def _user_info_graphql(self, api: _Api) -> dict[str, Any]:
        viewer = _field(self.name, await self._post(api, _VIEWER, {}), "viewer")
        if not isinstance(viewer, dict):
            raise LoginFailed(f"login failed: {self.name} gave no viewer")
        edges = (viewer.get("organizations") or {}).get("edges") or []
        orgs = [
            e["node"]["login"]
            for e in edges
            if isinstance(e, dict)
            and isinstance(e.get("node"), dict)
            and _is_text(e["node"].get("login"))
        ]
        details: dict[str, Any] = {
            "full_name": viewer.get("name"),
            "email": viewer.get("email"),
            "username": _field(self.name, viewer, "login"),
            "groups": list(orgs),
        }
        if self.getTeamsMembership and orgs:
            variables: dict[str, Any] = {"user": details["username"]}
            variables.update({f"o{i}": org for i, org in enumerate(orgs)})
            found = await self._post(api, _teams_query(len(orgs)), variables)
            teams: set[str] = set()
            for i, org in enumerate(orgs):
                data = found.get(f"o{i}")
                if not isinstance(data, dict):
                    # an organization that restricts OAuth applications shows no teams
                    continue
                for edge in (data.get("teams") or {}).get("edges") or []:
                    node = edge.get("node") if isinstance(edge, dict) else None
                    if not isinstance(node, dict):
                        continue
                    for key in ("name", "slug"):
                        if _is_text(node.get(key)):
                            teams.add(f"{org}/{node[key]}")
            details["groups"].extend(sorted(teams))
        if self.debug:
            log.info("www_oauth2_github_user", user=details)
        return details

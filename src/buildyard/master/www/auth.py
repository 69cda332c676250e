"""Authentication of web users: ``c['www']['auth']``, with Buildbot 4.3's plugins and routes.

The plugins: :class:`NoAuth` (the default: everyone is anonymous), :class:`UserPasswordAuth`
(users and passwords in master.cfg), :class:`HTPasswdAuth` (an Apache ``.htpasswd`` file, read
again at each login so edits need no reconfig), :class:`CustomAuth` (a master.cfg subclass's
``check_credentials``), and :class:`RemoteUserAuth` (a reverse proxy authenticates and names the
user in a header, on every request; a request without it is refused with a 403, as Buildbot
does, since it did not come through the proxy). The OAuth2 plugins (GitHub, GitLab, Google,
Bitbucket) are in :mod:`.oauth2`: they serve /auth/login themselves and set the same session.

A password login is ``GET /auth/login`` with HTTP Basic credentials (what the web UI sends) or
``POST /auth/login`` of the form that ``GET /auth/login`` without credentials shows. It sets
the ``BuildBotSession`` cookie, a JWT (HS256, as Buildbot's) holding the user's details until
``c['www']['cookie_expiration_time']`` (a week by default), signed with the master's session
secret (kept in the database state, so sessions outlive a restart), and redirects to the
``redirect`` argument (a path on this server) or ``/``. A wrong password is a 401. ``GET
/auth/logout`` clears the cookie and redirects the same way.

The user's details (:func:`user`) are ``{"anonymous": True}`` or ``{"username", "email",
"groups"}``; as in Buildbot, a password login's email is the username.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import html
import json
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import structlog
from aiohttp import web

from buildyard.common.awaitables import resolve
from buildyard.common.clock import Clock
from buildyard.common.config_object import ConfigObject, is_placeholder
from buildyard.common.connections import BODY_TIMEOUT
from buildyard.common.errors import config_error
from buildyard.master.data.api import DataAPI
from buildyard.master.model.properties import (
    Properties,
    RenderError,
    SecretsOnly,
    is_renderable,
    render,
)
from buildyard.master.www import htpasswd
from buildyard.master.www.authz import Authz, Forbidden, Target
from buildyard.master.www.webhooks import is_webhook_path

log = structlog.get_logger(__name__)

__all__ = [
    "COOKIE",
    "AuthBase",
    "CustomAuth",
    "Forbidden",
    "HTPasswdAuth",
    "NoAuth",
    "RemoteUserAuth",
    "Sessions",
    "UserPasswordAuth",
    "user",
]

COOKIE = "BuildBotSession"
ANONYMOUS: Mapping[str, Any] = {"anonymous": True}
REALM = "buildbot"
DEFAULT_LIFETIME = 7 * 24 * 3600.0


class Refused(Exception):
    """The request cannot be authenticated at all (RemoteUserAuth without its header)."""


_USER: web.RequestKey[Mapping[str, Any]] = web.RequestKey("user", Mapping)


def user(request: web.Request) -> Mapping[str, Any]:
    """The details of the user who made ``request`` (``{"anonymous": True}`` if nobody)."""
    found: Mapping[str, Any] = request.get(_USER, ANONYMOUS)
    return found


def owner(details: Mapping[str, Any]) -> str:
    """What a forced build records as its owner: the email, else the username, else
    ``"anonymous"`` (as Buildbot's JSON-RPC handler)."""
    if details.get("anonymous"):
        return "anonymous"
    for key in ("email", "username", "full_name"):
        value = details.get(key)
        if isinstance(value, str) and value:
            return value
    return "anonymous"


def _password_user(username: str) -> dict[str, Any]:
    # Buildbot's default user info provider: the email is the username
    return {"username": username, "email": username, "groups": []}


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


# -- the plugins ---------------------------------------------------------------------------------


class AuthBase(ConfigObject):
    """An authentication plugin of ``c['www']['auth']``."""

    #: whether users log in with a username and password at /auth/login
    takes_passwords: ClassVar[bool] = False
    #: whether a login sets the session cookie, which then names the user of each request
    uses_sessions: ClassVar[bool] = False
    #: whether the plugin serves /auth/login itself (:meth:`web_login`: OAuth2)
    handles_login: ClassVar[bool] = False

    def getConfigDict(self) -> dict[str, Any]:
        """What the web UI's config says of the plugin (``window.buildbotFrontendConfig``)."""
        return {"name": type(self).__name__, "oauth2": False, "fa_icon": "", "autologin": False}

    async def authenticate(self, username: str, password: str) -> dict[str, Any] | None:
        """The user's details if the password is right (only for :attr:`takes_passwords`)."""
        return None

    def from_headers(self, headers: Mapping[str, str]) -> dict[str, Any] | None:
        """The user a request's headers name (only for :class:`RemoteUserAuth`), or None."""
        return None

    def bind_secrets(self, lookup: Callable[[str], Awaitable[str | None]] | None) -> None:
        """The master's secret lookup (``c['secretsProviders']``), for the plugins whose
        settings may be secrets; the web server calls it before serving."""
        self._secret_lookup = lookup

    def bind_url(self, buildbot_url: str) -> None:
        """The master's ``buildbotURL``, for the plugins whose login leaves this server and
        comes back (OAuth2); the web server calls it before serving."""

    async def web_login(self, request: web.Request, sessions: Sessions) -> web.StreamResponse:
        """/auth/login (GET or POST) for a plugin that :attr:`handles_login`."""
        raise web.HTTPNotFound(text="this authentication has no login of its own")


class NoAuth(AuthBase):
    """No authentication: every user is anonymous."""


class UserInfoProviderBase(ConfigObject):
    """Buildbot's base for a user info provider: :meth:`getUserInfo` gives the details (email,
    full name, groups, ...) of a user who logged in with a password. A master.cfg subclass
    overrides it and sets an instance as its :class:`CustomAuth`'s ``userInfoProvider``; it
    may return the details or an awaitable of them (``defer.succeed({...})``)."""

    name = "noinfo"

    def getUserInfo(self, username: str) -> object:
        return {"email": username}


class CustomAuth(AuthBase):
    """Username and password checked by :meth:`check_credentials`, which a master.cfg
    subclass overrides (it runs in a thread: it may block). A ``userInfoProvider`` attribute
    the subclass sets (a :class:`UserInfoProviderBase`) adds to the user's details after a
    successful login, as in Buildbot."""

    takes_passwords = True
    uses_sessions = True
    userInfoProvider: object = None

    def check_credentials(self, user: str, password: str) -> bool:
        return False

    async def authenticate(self, username: str, password: str) -> dict[str, Any] | None:
        if not await asyncio.to_thread(self.check_credentials, username, password):
            return None
        return await self._details(username)

    async def _details(self, username: str) -> dict[str, Any]:
        """A user's details after a successful login: the user info provider's added."""
        details = _password_user(username)
        provider = self.userInfoProvider
        if provider is not None:
            found = getattr(provider, "getUserInfo")(username)  # noqa: B009 - any object with it
            found = await resolve(found)  # a value, a coroutine or a Deferred
            if isinstance(found, Mapping):
                details.update(found)
        return details


class UserPasswordAuth(CustomAuth):
    """``UserPasswordAuth({"homer": "doh!"})`` or ``UserPasswordAuth([("homer", "doh!")])``."""

    _secret_arguments = frozenset({"users"})

    def __init__(self, users: object = None, **unknown: Any) -> None:
        for name in unknown:
            config_error(f"UserPasswordAuth: unknown argument {name!r}")
        self._users: dict[str, bytes] = {}
        # passwords given as secrets (rendered at each login)
        self._rendered: dict[str, object] = {}
        pairs: list[object]
        if isinstance(users, Mapping):
            pairs = list(users.items())
        elif isinstance(users, list | tuple):
            pairs = list(users)
        else:
            config_error(
                "UserPasswordAuth: users must be a dict of {user: password} or a list of "
                f"(user, password) pairs, not {type(users).__name__}"
            )
            return
        for pair in pairs:
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                config_error(f"UserPasswordAuth: {pair!r} is not a (user, password) pair")
                continue
            username, password = _text(pair[0]), pair[1]
            if username is None:
                config_error(f"UserPasswordAuth: the user {pair[0]!r} must be a string")
                continue
            if isinstance(password, str):
                password = password.encode("utf-8")
            if is_renderable(password):  # util.Secret, util.Interpolate('%(secret:..)s')
                self._rendered[username] = password
                continue
            if not isinstance(password, bytes):
                config_error(
                    f"UserPasswordAuth: the password of {username!r} must be a string, bytes "
                    f"or a secret, not {type(password).__name__}"
                )
                continue
            self._users[username] = password

    async def authenticate(self, username: str, password: str) -> dict[str, Any] | None:
        renderable = self._rendered.get(username)
        if renderable is None:
            return await super().authenticate(username, password)
        expected = await self._render_password(username, renderable)
        given = password.encode("utf-8")
        if expected is None:
            return None
        if not hmac.compare_digest(expected, given):
            return None
        return await self._details(username)

    async def _render_password(self, username: str, renderable: object) -> bytes | None:
        """A password given as a secret, looked up in the secret providers at each login;
        None, logged, when it cannot be."""
        props = Properties()
        props.build = SecretsOnly(getattr(self, "_secret_lookup", None))
        try:
            value = await render(renderable, props)
        except RenderError as exc:
            log.error("www_auth_password_unavailable", user=username, why=str(exc))
            return None
        if isinstance(value, str):
            value = value.encode("utf-8")
        if not isinstance(value, bytes) or not value:
            log.error(
                "www_auth_password_unavailable",
                user=username,
                why=f"the password rendered to {type(value).__name__}, not a non-empty string",
            )
            return None
        return value

    def check_credentials(self, user: str, password: str) -> bool:
        expected = self._users.get(user)
        given = password.encode("utf-8")
        if expected is None:
            hmac.compare_digest(given, given)  # about as long as for a known user
            return False
        return hmac.compare_digest(expected, given)


class HTPasswdAuth(CustomAuth):
    """Users of an Apache ``.htpasswd`` file (bcrypt, apr1 MD5, SHA-1 or crypt lines). A
    relative path is taken from the directory of the file that builds it (master.cfg's)."""

    def __init__(self, passwdFile: object = None, **unknown: Any) -> None:
        for name in unknown:
            config_error(f"HTPasswdAuth: unknown argument {name!r}")
        if not isinstance(passwdFile, str | Path):
            config_error(f"HTPasswdAuth: passwdFile must be a path, not {passwdFile!r}")
            self.path = Path("/nonexistent")
            return
        path = Path(passwdFile)
        if not path.is_absolute() and self.defined_at is not None:
            path = Path(self.defined_at.file).parent / path
        self.path = path
        try:
            found = list(htpasswd.entries(path))
        except OSError as exc:
            config_error(f"HTPasswdAuth: cannot read the htpasswd file {str(path)!r}: {exc}")
            return
        except UnicodeDecodeError:
            config_error(f"HTPasswdAuth: the htpasswd file {str(path)!r} is not UTF-8 text")
            return
        for number, user, hashed in found:
            if htpasswd.scheme(hashed) is None:
                config_error(
                    f"HTPasswdAuth: {path}:{number}: the password of {user!r} is in a format "
                    "this server cannot check (use htpasswd -B, -m or -s)"
                )

    def check_credentials(self, user: str, password: str) -> bool:
        try:
            found = [h for _n, u, h in htpasswd.entries(self.path) if u == user]
        except (OSError, UnicodeDecodeError):
            return False
        return bool(found) and htpasswd.check(password, found[0])


_DEFAULT_REMOTE_USER_REGEX = r"(?P<username>[^ @]+)@(?P<realm>[^ @]+)"


class RemoteUserAuth(AuthBase):
    """The user a trusted reverse proxy names in ``header`` (``REMOTE_USER``), parsed with
    ``headerRegex``: its ``username`` group (required) and ``email``, ``realm``, ``full_name``
    groups if it has them."""

    def __init__(
        self,
        header: object = b"REMOTE_USER",
        headerRegex: object = _DEFAULT_REMOTE_USER_REGEX,
        userInfoProvider: object = None,
        **unknown: Any,
    ) -> None:
        for name in unknown:
            config_error(f"RemoteUserAuth: unknown argument {name!r}")
        self.header = _text(header) or ""
        if not self.header:
            config_error(f"RemoteUserAuth: header must be a header's name, not {header!r}")
        pattern: re.Pattern[str] | None = None
        if isinstance(headerRegex, re.Pattern):
            source = headerRegex.pattern
            headerRegex = source.decode() if isinstance(source, bytes) else source
        text = _text(headerRegex)
        if text is None:
            config_error(f"RemoteUserAuth: headerRegex must be a string, not {headerRegex!r}")
        else:
            try:
                pattern = re.compile(text)
            except re.error as exc:
                config_error(f"RemoteUserAuth: headerRegex {text!r} is not valid: {exc}")
            if pattern is not None and "username" not in pattern.groupindex:
                config_error(f"RemoteUserAuth: headerRegex {text!r} has no (?P<username>...) group")
                pattern = None
        self.regex = pattern or re.compile(_DEFAULT_REMOTE_USER_REGEX)
        if userInfoProvider is not None and not is_placeholder(userInfoProvider):
            config_error("RemoteUserAuth: userInfoProvider is not supported yet")

    def from_headers(self, headers: Mapping[str, str]) -> dict[str, Any] | None:
        value = headers.get(self.header)
        if value is None:
            raise Refused(f"missing http header {self.header}")
        found = self.regex.match(value)
        if found is None:
            raise Refused(f"http header {self.header} does not match {self.regex.pattern!r}")
        details: dict[str, Any] = {k: v for k, v in found.groupdict().items() if v is not None}
        details.setdefault("email", details["username"])
        details.setdefault("groups", [])
        return details


# -- sessions ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_JWT_HEADER = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())


class Sessions:
    """Session tokens: JWTs signed with HS256, ``{"user_info": {...}, "exp": seconds}``."""

    def __init__(self, secret: str, *, clock: Clock, lifetime: float = DEFAULT_LIFETIME) -> None:
        self._key = secret.encode("utf-8")
        self._clock = clock
        self.lifetime = lifetime

    def _sign(self, message: str) -> str:
        return _b64(hmac.new(self._key, message.encode("ascii"), hashlib.sha256).digest())

    def encode(self, details: Mapping[str, Any]) -> str:
        payload = {"user_info": dict(details), "exp": int(self._clock.now() + self.lifetime)}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        message = f"{_JWT_HEADER}.{body}"
        return f"{message}.{self._sign(message)}"

    def decode(self, token: str) -> dict[str, Any] | None:
        """The user details of a valid, unexpired token; None for anything else."""
        if not token.isascii():  # a token is base64url: anything else is not one of ours
            return None
        parts = token.split(".")
        if len(parts) != 3:
            return None
        message = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign(message), parts[2]):
            return None
        try:
            header = json.loads(_unb64(parts[0]))
            payload = json.loads(_unb64(parts[1]))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            return None
        if not isinstance(payload, dict):
            return None
        expires, details = payload.get("exp"), payload.get("user_info")
        if not isinstance(expires, int | float) or expires <= self._clock.now():
            return None
        return details if isinstance(details, dict) and details.get("username") else None


# -- the aiohttp side ----------------------------------------------------------------------------

AUTH: web.AppKey[AuthBase] = web.AppKey("auth", AuthBase)
AUTHZ: web.AppKey[Authz] = web.AppKey("authz", Authz)
SESSIONS: web.AppKey[Sessions] = web.AppKey("sessions", Sessions)


def setup(app: web.Application, *, auth: AuthBase, authz: Authz, sessions: Sessions) -> None:
    """Authenticate every request of ``app`` (a middleware) and serve /auth/login and
    /auth/logout; ``authz`` is what :func:`check` asks."""
    app[AUTH] = auth
    app[AUTHZ] = authz
    app[SESSIONS] = sessions
    app.middlewares.append(_middleware)
    app.add_routes(
        [
            web.get("/auth/login", _login),
            web.post("/auth/login", _login_form),
            web.get("/auth/logout", _logout),
        ]
    )


async def _refused(request: web.Request, message: str) -> web.StreamResponse:
    if request.method == "POST" and request.path.startswith("/api/v2/"):
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
        return web.json_response(body, status=403)
    return web.Response(text=json.dumps({"error": message}), status=403, content_type="text/plain")


@web.middleware
async def _middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if (
        request.path == "/change_hook"
        or request.path.startswith("/change_hook/")
        or is_webhook_path(request.path)
    ):
        # the hooks have their own authentication (change_hook_auth; a webhook's secret
        # path), as in Buildbot
        return await handler(request)
    auth = request.app[AUTH]
    details: dict[str, Any] | None = None
    if isinstance(auth, RemoteUserAuth):
        try:
            details = auth.from_headers(request.headers)
        except Refused as exc:
            return await _refused(request, str(exc))
    elif auth.uses_sessions:
        token = request.cookies.get(COOKIE)
        if token:
            details = request.app[SESSIONS].decode(token)
    request[_USER] = details or ANONYMOUS
    return await handler(request)


def _redirect(location: str, status: int) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


def _target(value: str | None) -> str:
    """Where to go after a login or logout: a path on this server, else ``/``. Browsers drop
    tabs and newlines from an address and read ``\\`` as ``/``, so an address with any of
    them (``/<tab>/evil.example``) is refused like ``//evil.example``."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    if "\\" in value or any(ord(char) <= 0x20 or ord(char) == 0x7F for char in value):
        return "/"
    parts = urllib.parse.urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def _basic(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, binascii.Error):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def _form_page(request: web.Request, target: str, error: str | None, status: int) -> web.Response:
    message = f'<p class="error">{html.escape(error)}</p>' if error else ""
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Log in</title><link rel="icon" href="data:,"></head>
<body>
<h1>Log in</h1>
{message}
<form method="post" action="/auth/login">
<input type="hidden" name="redirect" value="{html.escape(target)}">
<p><label>Username <input name="username" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password"
required></label></p>
<p><button type="submit">Log in</button></p>
</form>
</body></html>
"""
    headers = {"WWW-Authenticate": f'Basic realm="{REALM}"'} if status == 401 else {}
    return web.Response(text=page, status=status, content_type="text/html", headers=headers)


async def _log_in(
    request: web.Request, credentials: tuple[str, str], target: str, status: int
) -> web.Response:
    auth = request.app[AUTH]
    details = await auth.authenticate(*credentials)
    if details is None:
        return _form_page(request, target, "Wrong username or password.", 401)
    response = _redirect(target, status)
    start_session(request, response, request.app[SESSIONS], details)
    return response


def start_session(
    request: web.Request,
    response: web.StreamResponse,
    sessions: Sessions,
    details: Mapping[str, Any],
) -> None:
    """Log the user of ``details`` in: ``response`` sets the session cookie."""
    response.set_cookie(
        COOKIE,
        sessions.encode(details),
        max_age=int(sessions.lifetime),
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.secure,
    )


async def _login(request: web.Request) -> web.StreamResponse:
    if request.app[AUTH].handles_login:
        return await request.app[AUTH].web_login(request, request.app[SESSIONS])
    target = _target(request.query.get("redirect"))
    if not request.app[AUTH].takes_passwords:
        raise web.HTTPFound(target)  # nothing to log into (NoAuth), or already (RemoteUserAuth)
    credentials = _basic(request)
    if credentials is None:
        return _form_page(request, target, None, 200)
    return await _log_in(request, credentials, target, 302)


async def _login_form(request: web.Request) -> web.StreamResponse:
    if request.app[AUTH].handles_login:
        return await request.app[AUTH].web_login(request, request.app[SESSIONS])
    origin = request.headers.get("Origin")
    if origin is not None and urllib.parse.urlsplit(origin).netloc != request.host:
        # a form of another site logging the browser in (as its own user): refused
        return web.Response(text="login refused: the form is not this server's", status=403)
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            form = await request.post()
    except TimeoutError:
        return web.Response(text=f"the form did not arrive within {BODY_TIMEOUT:g} s", status=408)
    target = _target(str(form.get("redirect") or request.query.get("redirect") or ""))
    if not request.app[AUTH].takes_passwords:
        raise web.HTTPSeeOther(target)
    username, password = form.get("username"), form.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return _form_page(request, target, "Give a username and a password.", 400)
    return await _log_in(request, (username, password), target, 303)


async def _logout(request: web.Request) -> web.Response:
    response = _redirect(_target(request.query.get("redirect")), 302)
    response.del_cookie(COOKIE, path="/")
    return response


async def check(
    request: web.Request,
    api: DataAPI,
    path: tuple[str, ...],
    action: str,
    options: Mapping[str, Any],
    *,
    force_schedulers: Callable[[], Mapping[str, Any]] = dict,
) -> None:
    """Raise :class:`Forbidden` if the user of ``request`` may not do ``action`` (``"get"``
    for a read) on ``path``; called before anything is done."""
    authz = request.app.get(AUTHZ)
    if authz is None or not authz.allowRules:
        return
    target = Target(
        api=api, path=path, action=action, options=options, force_schedulers=force_schedulers
    )
    await authz.assert_allowed(target, user(request))

"""The www service (``master.www``): an aiohttp server on ``c['www']['port']``.

``port`` takes Buildbot's forms: an integer (all interfaces) or a strports string,
``tcp:PORT[:interface=ADDR]``, ``ssl:PORT:privateKey=FILE[:certKey=FILE]`` (HTTPS) or
``unix:PATH[:mode=0660]`` (see :mod:`buildyard.common.ports`). Without ``c['www']`` no web
server runs. Its connections are limited as :mod:`buildyard.common.connections` describes
(``header_timeout``, ``idle_timeout``, ``max_pending_connections``).

The service owns its listening socket; each configuration is an application served on it. A
reconfiguration (:class:`WebChange`) is prepared (application built, a new address bound),
applied (served next to the old one) and finished (old one closed) or reverted, so a new
title, ``buildbotURL`` or ``c['www']`` setting on the same address needs no restart, and the
master can undo a reconfiguration that fails elsewhere.

Without ``c['www']['ui']``, ``/`` is the master's own UI (:mod:`.builtin_ui`); with it, the
UI it names (:mod:`.ui`). Either way ``/config`` is Buildbot's frontend config with the
request's user in it (how a UI knows who is logged in). Reads go to the data API
(:mod:`.rest`). Control actions (:mod:`.control`): ``force`` goes to the running force
schedulers, which the service finds as Buildbot's data layer does
(``master.allSchedulers()``): through the service tree, its sibling ``scheduler_manager``'s
children that have a ``force`` method; the others (stop, rebuild, cancel, set_priority, the
worker actions, enable) go to the ``control_actions`` the master hands in. So the www imports
nothing of the schedulers, distributor or workers packages.

``/change_hook/<dialect>`` (:mod:`.hooks`) records the changes of webhooks; a reconfig that
changes only the hooks' settings keeps the application.

Every request is authenticated by ``c['www']['auth']`` (:mod:`.auth`: a session cookie, or a
proxy's header) and every REST read or action authorized by ``c['www']['authz']``
(:mod:`.authz`) before it does anything. The live events (/ws, /sse) are not checked, as in
Buildbot.
"""

from __future__ import annotations

import dataclasses
import datetime
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from buildyard.common import ui_assets
from buildyard.common.clock import Clock, SystemClock
from buildyard.common.limits import read_limits
from buildyard.common.ports import Listen, bind, parse_port, remove_socket_file, tls_context
from buildyard.common.service import Service
from buildyard.master.data.api import DataAPI
from buildyard.master.mq.base import MessageQueue
from buildyard.master.secrets.redaction import Redactor
from buildyard.master.www.authz import Authz

if TYPE_CHECKING:
    # the server's modules, and aiohttp under them, are imported when a server is first
    # built (_runner_for) or its webhooks first registered: a master without c['www']['port']
    # never loads them
    from aiohttp import web

    from buildyard.common.connections import ConnectionGuard
    from buildyard.master.www import auth, control, hooks, webhooks

log = structlog.get_logger(__name__)

# c['www']'s keys that the change hooks take without a new application (ChangeHooks.configure)
_HOOK_SETTINGS = ("change_hook_dialects", "change_hook_auth")


def without_hooks(www: Mapping[str, Any]) -> dict[str, Any]:
    """``c['www']`` but for the hooks' settings (which change without a new listener)."""
    return {k: v for k, v in www.items() if k not in _HOOK_SETTINGS}


def make_app(
    *,
    data: DataAPI,
    title: str,
    force_schedulers: control.ForceSchedulers | None = None,
    ui_routes: list[web.AbstractRouteDef] | None = None,
    mq: MessageQueue | None = None,
    control_actions: control.Control | None = None,
    authentication: auth.AuthBase | None = None,
    authz: Authz | None = None,
    sessions: auth.Sessions | None = None,
    change_hooks: hooks.ChangeHooks | None = None,
    service_webhooks: webhooks.Webhooks | None = None,
) -> web.Application:
    """The web server's application. Without ``authentication`` nobody logs in; without
    ``authz`` everything is allowed; without ``sessions``, sessions are signed with a secret
    of this application's own."""
    from aiohttp import web

    from buildyard.master.www import (
        auth,
        builtin_ui,
        control,
        events,
        hooks,
        openapi,
        rest,
        webhooks,
    )

    # buildbot-www asks for "<buildbotURL>/icon.png": "//icon.png" is redirected to "/icon.png"
    app = web.Application(
        middlewares=[web.normalize_path_middleware(append_slash=False, merge_slashes=True)]
    )
    app[rest.DATA_API] = data
    app[control.FORCE_SCHEDULERS] = force_schedulers or dict
    app[control.CONTROL] = control_actions
    auth.setup(
        app,
        auth=authentication or auth.NoAuth(),
        authz=authz or Authz(),
        sessions=sessions or auth.Sessions(secrets.token_hex(32), clock=SystemClock()),
    )

    pages = ui_routes if ui_routes is not None else builtin_ui.routes(title=title)
    app.add_routes([*openapi.routes(), *rest.routes(), *control.routes(), *pages])
    app.middlewares.append(rest.method_errors)
    hooks.setup(app, change_hooks)
    webhooks.setup(app, service_webhooks)
    if mq is not None:
        events.setup(app, mq)
    return app


@dataclasses.dataclass(frozen=True, kw_only=True)
class Site:
    """What the web server shows of the master's configuration (c['title'], ...)."""

    title: str = "buildyard"
    title_url: str = "http://buildbot.net/"
    buildbot_url: str = "http://localhost:8080/"
    multi_master: bool = False


#: the endpoints that c['www']['port'] takes (see buildyard.common.ports)
WWW_ENDPOINTS = ("tcp", "ssl", "unix")


def _address(listen: Listen) -> tuple[str | None, int, str | None]:
    """Where ``listen`` listens, without how (TLS, backlog): a change of certificate keeps the
    listening socket."""
    return (listen.host, listen.port, listen.unix)


class WebChange:
    """A prepared change of the web server (:meth:`WWWService.prepare`), in three steps.

    ``apply()`` serves the new configuration next to the old one (on the same listening socket
    when the address did not change, else on the new address, already bound); ``finish()``
    then closes the old one, or ``revert()`` closes the new one and leaves the old one serving
    exactly as before. The master calls ``finish()`` only once every other part of a
    reconfiguration is in place, so a reconfiguration that fails anywhere reverts this too.
    """

    def __init__(
        self,
        service: WWWService,
        *,
        listen: Listen | None,
        site: Site,
        www: Mapping[str, Any],
        runner: web.AppRunner | None = None,
        guard: ConnectionGuard | None = None,
        sock: socket.socket | None = None,
        changed: bool = True,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._service = service
        self._listen, self._site, self._www = listen, site, www
        self._runner, self._guard, self._sock = runner, guard, sock
        self._tls = tls
        self.changed = changed

    async def apply(self) -> None:
        if self._runner is not None and self._guard is not None and self._sock is not None:
            from buildyard.common.connections import GuardedSite

            # a duplicate: the server closes its socket when it stops, ours stays for the next
            await GuardedSite(
                self._runner,
                sock=self._sock.dup(),
                guard=self._guard,
                ssl_context=self._tls,
                backlog=self._listen.backlog if self._listen is not None else None,
            ).start()

    async def finish(self) -> None:
        svc = self._service
        # the hooks' settings are the only part of a configuration served without a new
        # application: they take effect here, whether or not the rest changed (before the
        # first application, its _runner_for takes them from svc._www)
        if svc._hooks is not None:
            svc._hooks.configure(self._www)
        if not self.changed:
            svc._www = self._www
            return
        old_runner, old_sock, old_listen = svc._runner, svc._sock, svc._listen
        svc._runner, svc._sock = self._runner, self._sock
        svc._listen, svc._site, svc._www = self._listen, self._site, self._www
        if old_runner is not None:
            await old_runner.cleanup()
        if old_sock is not None and old_sock is not self._sock:
            old_sock.close()
            if old_listen is not None:
                remove_socket_file(old_listen)
        listen, sock = self._listen, self._sock
        svc.port = None
        if listen is not None and sock is not None:
            if listen.unix is not None:
                log.info("www_listening", unix=listen.unix, url=f"unix:{listen.unix}")
            else:
                svc.port = int(sock.getsockname()[1])
                host = listen.host
                log.info(
                    "www_listening",
                    host=host or "*",
                    port=svc.port,
                    url=f"{listen.scheme}://{host or 'localhost'}:{svc.port}/",
                )

    async def revert(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._sock is not None and self._sock is not self._service._sock:
            self._sock.close()
            if self._listen is not None:
                remove_socket_file(self._listen)


class WWWService(Service):
    def __init__(
        self,
        *,
        data: DataAPI,
        mq: MessageQueue | None = None,
        control_actions: control.Control | None = None,
        session_secret: Callable[[], Awaitable[str]] | None = None,
        clock: Clock | None = None,
        hook_services: hooks.HookServices | None = None,
        redactor: Redactor | None = None,
        secret: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        """``session_secret`` gives the key that signs session cookies (the master keeps it
        in the database, so sessions outlive a restart); without it, each start makes one.
        ``hook_services`` is what the change hooks record changes with (without it, every
        dialect is refused). ``secret`` looks a secret up (``c['secretsProviders']``), for the
        auth plugins' settings that may be secrets."""
        super().__init__("www")
        self._secret_lookup = secret
        self._data = data
        self._mq = mq
        self._control = control_actions
        self._session_secret = session_secret
        self._secret: str | None = None
        self._clock = clock or SystemClock()
        # one for the service's life, made with the first application: a reconfig that
        # changes only the hooks swaps their settings in place, without a new application
        self._hooks: hooks.ChangeHooks | None = None
        self._hook_services = hook_services
        # the services' own webhooks (TelegramBot's), also one for the service's life
        self._webhooks: webhooks.Webhooks | None = None
        # hides the secrets builds used in what /config shows
        self._redactor = redactor or Redactor()
        # what serves now: the application's runner, and the listening socket it serves on
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self._listen: Listen | None = None
        self._site = Site()
        self._www: Mapping[str, Any] = {}
        self.port: int | None = None

    @property
    def webhooks(self) -> webhooks.Webhooks:
        """The services' own webhooks (``add`` one to serve it), made on first use."""
        if self._webhooks is None:
            from buildyard.master.www import webhooks

            self._webhooks = webhooks.Webhooks()
        return self._webhooks

    async def reconfigure(self, www: Mapping[str, Any], *, site: Site) -> None:
        """Serve ``www`` now: :meth:`prepare`, then apply and finish (revert on failure)."""
        change = await self.prepare(www, site=site)
        try:
            await change.apply()
        except BaseException:
            await change.revert()
            raise
        await change.finish()

    async def prepare(self, www: Mapping[str, Any], *, site: Site) -> WebChange:
        """Everything a new ``c['www']`` needs that can fail, done before anything changes:
        the session key, the UI's files, the application, and a new address bound (OSError
        when it is taken). An unchanged address keeps its listening socket, so a new title,
        ``buildbotURL`` or ``c['www']`` setting is served without a restart. Nothing is
        served differently until the change is applied."""
        listen = (
            parse_port(www["port"], allow=WWW_ENDPOINTS) if www.get("port") is not None else None
        )
        if (
            listen == self._listen
            and site == self._site
            and without_hooks(www) == without_hooks(self._www)
        ):
            return WebChange(self, listen=listen, site=site, www=www, changed=False)
        if listen is None or not self.running:
            return WebChange(self, listen=listen, site=site, www=www)
        # an unreadable certificate or key fails here, before anything changes
        tls = tls_context(listen.tls) if listen.tls is not None else None
        runner, guard = await self._runner_for(www, site)
        try:
            same = self._listen is not None and _address(listen) == _address(self._listen)
            sock = self._sock if same and self._sock else bind(listen)
        except BaseException:
            await runner.cleanup()
            raise
        return WebChange(
            self, listen=listen, site=site, www=www, runner=runner, guard=guard, sock=sock, tls=tls
        )

    async def _runner_for(
        self, www: Mapping[str, Any], site: Site
    ) -> tuple[web.AppRunner, ConnectionGuard]:
        from aiohttp import web

        from buildyard.common.connections import ConnectionGuard, ServerLog
        from buildyard.master.www import auth, builtin_ui, hooks, ui

        if self._hooks is None:
            self._hooks = hooks.ChangeHooks(dialects={}, auth=None, services=self._hook_services)
            self._hooks.configure(self._www)  # the settings of the configuration served now
        authentication = www.get("auth")
        if not isinstance(authentication, auth.AuthBase):
            authentication = auth.NoAuth()
        authentication.bind_secrets(self._secret_lookup)
        authentication.bind_url(site.buildbot_url)
        authz = www.get("authz")
        if not isinstance(authz, Authz):
            authz = Authz()
        if self._secret is None:
            get_secret = self._session_secret
            self._secret = await get_secret() if get_secret is not None else secrets.token_hex(32)
        lifetime = www.get("cookie_expiration_time")
        sessions = auth.Sessions(
            self._secret,
            clock=self._clock,
            lifetime=lifetime.total_seconds()
            if isinstance(lifetime, datetime.timedelta)
            else auth.DEFAULT_LIFETIME,
        )
        ui_static = ui_assets.locate(str(www["ui"])) if www.get("ui") is not None else None
        wanted = www.get("plugins") or {}
        plugin_dirs = ui_assets.locate_plugins(wanted, ui_static) if ui_static is not None else {}
        config = ui.frontend_config(
            title=site.title,
            title_url=site.title_url,
            buildbot_url=site.buildbot_url,
            multi_master=site.multi_master,
            www=www,
            auth=authentication.getConfigDict(),
            plugins={name: wanted[name] for name in plugin_dirs},
        )

        redactor = self._redactor

        def request_config(request: web.Request) -> Mapping[str, Any]:
            shown: dict[str, Any] = redactor.redact_value(config)
            return {**shown, "user": dict(auth.user(request))}

        if ui_static is not None:
            ui_routes = ui.routes(ui_static, request_config, plugin_dirs)
        else:
            ui_routes = builtin_ui.routes(title=site.title, config=request_config)
        app = make_app(
            data=self._data,
            title=site.title,
            force_schedulers=self._force_schedulers,
            ui_routes=ui_routes,
            mq=self._mq,
            control_actions=self._control,
            authentication=authentication,
            authz=authz,
            sessions=sessions,
            change_hooks=self._hooks,
            service_webhooks=self.webhooks,
        )
        # connection limits: the guard sees each request begin and end, so it goes first
        guard = ConnectionGuard(read_limits(www), name="www")
        app.middlewares.insert(0, guard.middleware)
        runner = web.AppRunner(app, access_log=None, logger=ServerLog("www"))
        await runner.setup()
        return runner, guard

    def _force_schedulers(self) -> dict[str, Any]:
        """The running schedulers that take ``force`` (ForceScheduler), by name."""
        master = self.parent
        if master is None or "scheduler_manager" not in master:
            return {}
        return {
            svc.name: svc
            for svc in master.child("scheduler_manager")
            if callable(getattr(svc, "force", None))
        }

    async def stop_service(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._sock is not None:
            self._sock.close()
            if self._listen is not None:
                remove_socket_file(self._listen)
        self._runner, self._sock, self._listen = None, None, None
        self._site, self._www = Site(), {}
        self.port = None

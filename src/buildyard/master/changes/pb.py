"""``changes.PBChangeSource``: changes sent over PB, by ``buildbot sendchange`` /
``buildyard sendchange`` or any client of Buildbot's PB change source.

The client logs in as ``user`` / ``passwd`` (Buildbot's defaults: ``change`` / ``changepw``)
on ``port`` (``passwd`` may be a secret, ``util.Secret('changepw')``: rendered when the
source starts and on each reconfig that changes it, as Buildbot's PB manager renders it), by
default the worker PB port of ``c['protocols']['pb']`` (one port serves both: the login's user
name says which service it is for); another port is served for it alone. It
then calls ``addChange(change)`` on its perspective with a dict: ``who`` (or ``author``),
``committer``, ``files``, ``comments``, ``revision``, ``when`` (or ``when_timestamp``), a
Unix time, ``branch``, ``category``, ``revlink``, ``properties`` (name to value; recorded with
the source ``Change``), ``repository``, ``project``, ``codebase``, ``src`` (the version control,
``sendchange --vc``: as in Buildbot, ``git``, ``svn``, ``hg``, ... link the change to a user
made from its author); ``links`` is accepted and not recorded, as in Buildbot. Byte strings
are read as UTF-8. With ``prefix``, only the files whose names start with it are kept, with it
stripped; a change is recorded even when no file is left.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from buildyard.common.errors import config_error
from buildyard.common.ports import Listen, parse_port
from buildyard.master.changes.base import ChangeSource, ChangeSourceConfig, ChangeSourceContext
from buildyard.master.model.properties import (
    Properties,
    PropertyValue,
    RenderError,
    SecretsOnly,
    is_renderable,
    render,
)
from buildyard.protocol.pb import CallFailed, Referenceable
from buildyard.protocol.portal import Registration

log = structlog.get_logger(__name__)

_LABEL = "PBChangeSource"
# the dict fields addChange takes (after who -> author, when -> when_timestamp)
_TEXT_FIELDS = ("author", "committer", "comments", "revision", "branch", "category")
_KNOWN = frozenset(
    {
        "who",
        "author",
        "committer",
        "files",
        "comments",
        "revision",
        "when",
        "when_timestamp",
        "branch",
        "category",
        "revlink",
        "properties",
        "repository",
        "project",
        "codebase",
        "src",
        "links",
        "isdir",
        "vc",
    }
)


class PBChangeSource(ChangeSourceConfig):
    """Buildbot's ``changes.PBChangeSource(user='change', passwd='changepw', port=None,
    prefix=None, name=None)``; see the module docstring."""

    _secret_arguments = frozenset({"passwd"})

    def __init__(
        self,
        user: str = "change",
        passwd: Any = "changepw",
        port: int | str | None = None,
        prefix: str | None = None,
        name: str | None = None,
    ) -> None:
        # master.cfg may pass anything: each value is checked as what it is, not as annotated
        given: dict[str, object] = {"prefix": prefix, "name": name}
        if not isinstance(user, str) or not user:
            config_error(f"{_LABEL}: user must be a non-empty string, not {user!r}")
        # passwd may be a secret (util.Secret, util.Interpolate('%(secret:...)s')), rendered
        # from c['secretsProviders'] when the source starts and on each reconfig, as Buildbot's
        # PB manager renders the passwords it checks
        if not (isinstance(passwd, str) and passwd) and not is_renderable(passwd):
            config_error(
                f"{_LABEL}: passwd must be a non-empty string or a secret, "
                f"not {type(passwd).__name__}"
            )
        self.user = user if isinstance(user, str) else ""
        self.passwd: Any = passwd if isinstance(passwd, str) or is_renderable(passwd) else ""
        self.port = port
        self.listen: Listen | None = None
        if port is not None:
            try:
                self.listen = parse_port(port)
            except ValueError as exc:
                config_error(f"{_LABEL}: {exc}")
        if given["prefix"] is not None and not isinstance(given["prefix"], str):
            config_error(f"{_LABEL}: prefix must be a string or None, not {prefix!r}")
        self.prefix = prefix if isinstance(given["prefix"], str) else None
        self.name = f"{_LABEL}:{prefix}:{port}" if self.prefix else f"{_LABEL}:{port}"
        if isinstance(given["name"], str):
            self.name = str(given["name"])
        elif given["name"] is not None:
            config_error(f"{_LABEL}: name must be a string, not {type(name).__name__}")

    def make_service(self, name: str, ctx: ChangeSourceContext) -> PBChangeSourceService:
        return PBChangeSourceService(name, self, ctx)


class PBChangeSourceService(ChangeSource):
    def __init__(self, name: str, config: PBChangeSource, ctx: ChangeSourceContext) -> None:
        super().__init__(name, config, ctx)
        self.config: PBChangeSource = config
        self._registration: Registration | None = None
        # the port number it listens on (the worker PB port's, or its own)
        self.registered_port: int | None = None

    async def activate(self) -> None:
        await self._register()

    async def _register(self) -> None:
        ports = self.ctx.pb_ports
        if ports is None:
            raise RuntimeError(f"{_LABEL} {self.name!r}: this master serves no PB")
        config = self.config
        props = Properties()
        props.build = SecretsOnly(self.ctx.secret)
        try:
            password = await render(config.passwd, props)
        except RenderError as exc:
            raise RuntimeError(f"{_LABEL} {self.name!r}: cannot render passwd: {exc}") from exc
        if not isinstance(password, str) or not password:
            raise RuntimeError(
                f"{_LABEL} {self.name!r}: passwd rendered to {type(password).__name__}"
            )
        registration = Registration(
            owner=f"change source {self.name!r}",
            username=config.user,
            password=password,
            perspective=lambda peer: ChangePerspective(self, peer),
        )
        portal = await ports.register(config.listen, registration)
        self._registration = registration
        own = ports.port_of(portal)
        if own is None and ports.worker_listen is not None:
            own = ports.worker_listen.port
        self.registered_port = own
        log.info("pb_change_source_listening", changesource=self.name, port=own)

    async def _unregister(self) -> None:
        registration, self._registration = self._registration, None
        if registration is not None and self.ctx.pb_ports is not None:
            await self.ctx.pb_ports.unregister(registration)

    async def reconfigure(self, config: Any) -> None:
        self.config = config
        if self._registration is not None:
            await self._unregister()
            await self._register()

    async def stop_service(self) -> None:
        await self._unregister()
        await super().stop_service()

    async def add_change(self, change: Mapping[Any, Any], peer: str) -> int:
        """Record one change sent by a client (the dict of ``addChange``)."""
        fields = _read_change(change, self.config.prefix)
        changeid = await self.ctx.updates.add_change(**fields)
        log.info("pb_change_added", changesource=self.name, peer=peer, changeid=changeid)
        return changeid


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _read_change(sent: Mapping[Any, Any], prefix: str | None) -> dict[str, Any]:
    """The change as ``updates.add_change`` takes it; CallFailed naming a malformed field."""
    change = {_text(k): _text(v) for k, v in sent.items()}
    unknown = sorted(str(k) for k in change if k not in _KNOWN)
    if unknown:
        raise CallFailed(f"addChange: unknown fields {', '.join(unknown)}", "builtins.ValueError")
    if "who" in change:
        change["author"] = change.pop("who")
    if "when" in change:
        change["when_timestamp"] = change.pop("when")
    fields: dict[str, Any] = {}
    for key in _TEXT_FIELDS:
        value = change.get(key)
        if value is not None and not isinstance(value, str):
            raise CallFailed(f"addChange: {key} must be a string", "builtins.TypeError")
        fields[key] = value
    if not fields["author"]:
        raise CallFailed("addChange: the change has no author ('who')", "builtins.ValueError")
    fields["comments"] = fields["comments"] or ""
    fields["committer"] = fields["committer"] or None
    for key in ("revlink", "repository", "project"):
        value = change.get(key) or ""
        if not isinstance(value, str):
            raise CallFailed(f"addChange: {key} must be a string", "builtins.TypeError")
        fields[key] = value
    codebase = change.get("codebase")
    if codebase is not None and not isinstance(codebase, str):
        raise CallFailed("addChange: codebase must be a string", "builtins.TypeError")
    fields["codebase"] = codebase
    src = change.get("src")
    if src is not None and not isinstance(src, str):
        raise CallFailed("addChange: src must be a string", "builtins.TypeError")
    fields["src"] = src or None
    when = change.get("when_timestamp")
    if when is not None:
        if isinstance(when, bool) or not isinstance(when, int | float):
            raise CallFailed("addChange: when must be a Unix time", "builtins.TypeError")
        when = int(when)
    fields["when_timestamp"] = when
    fields["files"] = _files(change.get("files") or [], prefix)
    fields["properties"] = _properties(change.get("properties") or {})
    return fields


def _files(files: Any, prefix: str | None) -> list[str]:
    """The names kept: with ``prefix``, those under it, with it stripped."""
    if not isinstance(files, list | tuple) or not all(isinstance(f, str | bytes) for f in files):
        raise CallFailed("addChange: files must be a list of names", "builtins.TypeError")
    names = [_text(f) for f in files]
    if not prefix:
        return names
    return [name[len(prefix) :] for name in names if name.startswith(prefix)]


def _properties(properties: Any) -> dict[str, PropertyValue]:
    if not isinstance(properties, dict):
        raise CallFailed("addChange: properties must be a dict", "builtins.TypeError")
    props: dict[str, PropertyValue] = {}
    for key, value in properties.items():
        name = _text(key)
        if not isinstance(name, str):
            raise CallFailed("addChange: property names must be strings", "builtins.TypeError")
        props[name] = (_text(value), "Change")
    return props


class ChangePerspective(Referenceable):
    """What a change source's client may call after login (Buildbot's ``perspective_*``)."""

    def __init__(self, source: PBChangeSourceService, peer: str) -> None:
        self._source, self._peer = source, peer

    async def remote_addChange(self, changedict: Any) -> None:
        if not isinstance(changedict, dict):
            raise CallFailed("addChange takes a dict", "builtins.TypeError")
        await self._source.add_change(changedict, self._peer)

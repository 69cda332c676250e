"""Reading each BuildmasterConfig key into :class:`MasterConfig`, with Buildbot's checks.

Every mistake goes to :func:`~buildyard.common.errors.config_error` at the master.cfg line that
set the key (:mod:`.assignments`), so one load reports them all. Checks that span several keys
(a builder naming a worker) live in :mod:`.references`.
"""

from __future__ import annotations

import codecs
import datetime
import difflib
import re
import types
from collections.abc import Callable, Mapping
from pathlib import Path

from buildyard.common import ui_assets
from buildyard.common.config_object import is_placeholder, report_if_placeholder
from buildyard.common.errors import config_error, config_warning
from buildyard.common.limits import LIMIT_KEYS, read_limits
from buildyard.common.ports import msgpack_listen, parse_port
from buildyard.master.builds.builder import BuilderConfig
from buildyard.master.changes.base import ChangeSourceConfig
from buildyard.master.changes.hooks import dialects as hook_dialects
from buildyard.master.config.assignments import KeyLines
from buildyard.master.config.master_config import (
    DEFAULT_DB_URL,
    KNOWN_KEYS,
    MasterConfig,
    default_validation,
)
from buildyard.master.config.no_effect import WAMP_INSTEAD, warn_no_effect
from buildyard.master.db.engine import normalize_url
from buildyard.master.db.errors import UnsupportedDatabase
from buildyard.master.model.projectconfig import Codebase, Project
from buildyard.master.model.revlinks import default_revlink_matcher
from buildyard.master.reporters.service import BuildbotService
from buildyard.master.schedulers.base import SchedulerConfig
from buildyard.master.secrets.providers import SecretInAFile
from buildyard.master.workers import listener
from buildyard.master.workers.config import Worker
from buildyard.master.workers.machines import Machine

__all__ = ["did_you_mean", "read_config"]

# Keys of older Buildbots, with what replaced them.
_REMOVED_KEYS = {
    "slaves": "Buildbot 0.8's name for c['workers']",
    "slavePortnum": "Buildbot 0.8's worker port; use c['protocols']",
    "status": "Buildbot 0.8's status targets became reporters in c['services']",
    "mergeRequests": "Buildbot 0.8's name for c['collapseRequests']",
    "buildHorizon": "removed in Buildbot 0.9; use util.JanitorConfigurator",
    "eventHorizon": "removed in Buildbot 0.9; use util.JanitorConfigurator",
    "logHorizon": "removed in Buildbot 0.9; use util.JanitorConfigurator",
    "debugPassword": "no longer used; remove it",
}
_MQ_KEYS = {
    "simple": frozenset({"debug"}),
    "postgres": frozenset({"debug", "retention"}),
    # Buildbot's: buildyard has no WAMP client, it warns and shares events through PostgreSQL
    "wamp": frozenset({"debug", "router_url", "realm", "wamp_debug_level"}),
}
_PROTOCOLS = ("msgpack_experimental_v7", "pb", "null")
_LOG_COMPRESSION = ("raw", "gz", "bz2", "lz4", "zstd", "br")
_WWW_KEYS = frozenset(
    {
        "allowed_origins",
        "auth",
        "authz",
        "avatar_methods",
        "change_hook_auth",
        "change_hook_dialects",
        "cookie_expiration_time",
        "custom_templates_dir",
        "debug",
        "default_page",
        "graphql",
        "json_cache_seconds",
        "jsonp",
        "logRotateLength",
        "logfileName",
        "maxRotatedFiles",
        "plugins",
        "port",
        "project_widgets",
        "rest_minimum_version",
        "theme",
        # buildyard's: which web UI the master serves (buildyard.common.ui_assets)
        "ui",
        "ui_default_config",
        "versions",
        "ws_ping_interval",
        # buildyard's: the web port's connection limits (buildyard.common.limits)
        *LIMIT_KEYS,
    }
)
_HOUSEKEEPING_KEYS = ("interval", "expireAfter")


def did_you_mean(name: str, known: Mapping[str, object] | frozenset[str] | tuple[str, ...]) -> str:
    """``"; did you mean 'title'?"`` for the closest known name, or ``""``."""
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), lowered, n=1, cutoff=0.6)
    return f"; did you mean {lowered[close[0]]!r}?" if close else ""


def _type_name(value: object) -> str:
    return type(value).__name__


class _Reader:
    def __init__(self, config: Mapping[object, object], lines: KeyLines) -> None:
        self.config = config
        self.lines = lines

    def error(self, key: str, message: str) -> None:
        config_error(message, location=self.lines.location(key))

    def string(self, key: str, default: str) -> str:
        value = self.config.get(key, default)
        if isinstance(value, str):
            return value
        self.error(key, f"c[{key!r}] must be a string, not {_type_name(value)}")
        return default

    def url(self, key: str, default: str) -> str:
        # Buildbot takes None for a URL key (titleURL, buildbotURL) as "not set"
        value = default if self.config.get(key) is None else self.string(key, default)
        return value if value.endswith("/") else value + "/"

    def optional_int(self, key: str, default: int | None = None, minimum: int = 0) -> int | None:
        value = self.config.get(key, default)
        if value is None or (
            isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        ):
            return value
        self.error(key, f"c[{key!r}] must be an integer of at least {minimum}, not {value!r}")
        return default

    def callback(self, key: str) -> Callable[..., object] | None:
        value = self.config.get(key)
        report_if_placeholder(value)
        if value is None or callable(value):
            return value
        self.error(key, f"c[{key!r}] must be a callable, not {_type_name(value)}")
        return None

    def mapping(self, key: str) -> dict[str, object]:
        value = self.config.get(key, {})
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.error(key, f"c[{key!r}] must be a dictionary, not {_type_name(value)}")
            return {}
        for name in value:
            if not isinstance(name, str):
                self.error(key, f"c[{key!r}] keys must be strings, not {name!r}")
        return dict(value)

    def sequence(self, key: str, *, single: bool = False) -> list[object]:
        value = self.config.get(key, [])
        if value is None:
            return []
        if isinstance(value, list | tuple):
            return list(value)
        if single:
            return [value]
        self.error(key, f"c[{key!r}] must be a list, not {_type_name(value)}")
        return []

    def unknown_subkeys(self, key: str, given: Mapping[str, object], known: frozenset[str]) -> None:
        for name in given:
            if name not in known:
                self.error(key, f"unknown key {name!r} in c[{key!r}]{did_you_mean(name, known)}")


def _check_keys(reader: _Reader) -> None:
    for key in reader.config:
        if not isinstance(key, str):
            config_error(
                f"BuildmasterConfig keys must be strings, not {key!r}",
                location=reader.lines.location(),
            )
        elif key not in KNOWN_KEYS:
            hint = (
                f" ({_REMOVED_KEYS[key]})"
                if key in _REMOVED_KEYS
                else did_you_mean(key, KNOWN_KEYS)
            )
            reader.error(key, f"unknown BuildmasterConfig key {key!r}{hint}")


def _placeholders_only(
    reader: _Reader,
    key: str,
    what: str,
    *,
    single: bool = False,
    kind: type | tuple[type, ...] = (),
) -> tuple[object, ...]:
    """The objects of a key: instances of ``kind``, or stand-ins (already reported) of the
    classes still to come."""
    items = reader.sequence(key, single=single)
    for item in items:
        if isinstance(item, type) or not (is_placeholder(item) or isinstance(item, kind)):
            reader.error(key, f"c[{key!r}] must be a list of {what}, but it contains {item!r}")
    return tuple(items)


def _machines(reader: _Reader) -> tuple[object, ...]:
    """c['machines']: machines (``buildbot.machine.*``), each name once."""
    items = _placeholders_only(reader, "machines", "machines (Machine)", kind=Machine)
    seen: set[str] = set()
    for item in items:
        if isinstance(item, Machine):
            if item.name in seen:
                reader.error("machines", f"duplicate machine name {item.name!r}")
            seen.add(item.name)
    return items


def _projects(reader: _Reader) -> tuple[Project, ...]:
    """c['projects']: util.Project objects, each name once."""
    projects: list[Project] = []
    names: set[str] = set()
    for item in reader.sequence("projects"):
        if not isinstance(item, Project):
            reader.error(
                "projects",
                f"c['projects'] must be a list of util.Project, but it contains {item!r}",
            )
        elif item.name in names:
            reader.error("projects", f"c['projects'] has two projects named {item.name!r}")
        else:
            names.add(item.name)
            projects.append(item)
    return tuple(projects)


def _codebases(reader: _Reader, projects: tuple[Project, ...]) -> tuple[Codebase, ...]:
    """c['codebases']: util.Codebase objects, each of a project in c['projects'], each name
    once within its project."""
    codebases: list[Codebase] = []
    known = {p.name for p in projects}
    seen: set[tuple[str, str]] = set()
    for item in reader.sequence("codebases"):
        if not isinstance(item, Codebase):
            reader.error(
                "codebases",
                f"c['codebases'] must be a list of util.Codebase, but it contains {item!r}",
            )
        elif item.project not in known:
            reader.error(
                "codebases",
                f"c['codebases']: codebase {item.name!r} names project {item.project!r}, "
                "which is not in c['projects']",
            )
        elif (item.project, item.name) in seen:
            reader.error(
                "codebases",
                f"c['codebases'] has two codebases named {item.name!r} in project {item.project!r}",
            )
        else:
            seen.add((item.project, item.name))
            codebases.append(item)
    return tuple(codebases)


def _check_codebase_projects(
    reader: _Reader, change_sources: tuple[object, ...], projects: tuple[Project, ...]
) -> None:
    """A change source's ``codebase=util.Codebase(...)`` names a project of c['projects']
    (Buildbot refuses to start such a poller)."""
    known = {p.name for p in projects}
    for source in change_sources:
        codebase = getattr(source, "codebase", None)
        if isinstance(codebase, Codebase) and codebase.project not in known:
            reader.error(
                "change_source",
                f"change source {getattr(source, 'name', source)!r}: its codebase "
                f"{codebase.name!r} names project {codebase.project!r}, which is not in "
                "c['projects']",
            )


def _services(reader: _Reader) -> tuple[object, ...]:
    """c['services']: reporters and users' BuildbotService subclasses, each name once."""
    items = _placeholders_only(reader, "services", "services (reporters)", kind=BuildbotService)
    seen: set[str] = set()
    for item in items:
        if isinstance(item, BuildbotService) and isinstance(item.name, str):
            if item.name in seen:
                reader.error("services", f"c['services'] has two services named {item.name!r}")
            seen.add(item.name)
    return items


def _workers(reader: _Reader) -> tuple[Worker, ...]:
    workers: list[Worker] = []
    for item in reader.sequence("workers"):
        if isinstance(item, Worker):
            workers.append(item)
        elif not is_placeholder(item) or isinstance(item, type):
            reader.error(
                "workers", f"c['workers'] must be a list of workers, but it contains {item!r}"
            )
    return tuple(workers)


def _builders(reader: _Reader) -> tuple[BuilderConfig, ...]:
    builders: list[BuilderConfig] = []
    for item in reader.sequence("builders"):
        if isinstance(item, BuilderConfig):
            builders.append(item)
        elif isinstance(item, Mapping):
            try:
                builders.append(BuilderConfig(**item))
            except TypeError as exc:
                reader.error("builders", f"c['builders'] entry {item!r}: {exc}")
        else:
            reader.error("builders", f"c['builders'] must contain builder configs, not {item!r}")
    for builder in builders:
        if builder.builddir.startswith("/"):
            config_warning(
                f"builder {builder.name!r}: the absolute builddir {builder.builddir!r} is "
                "probably meant as workerbuilddir",
                location=builder.defined_at,
            )
    return tuple(builders)


def _db(reader: _Reader) -> tuple[str, Mapping[str, object]]:
    if "db" in reader.config:
        db = reader.mapping("db")
        reader.unknown_subkeys("db", db, frozenset({"db_url", "engine_kwargs"}))
        url = db.get("db_url", DEFAULT_DB_URL)
        kwargs = db.get("engine_kwargs", {})
        if not isinstance(kwargs, Mapping):
            reader.error("db", "c['db']['engine_kwargs'] must be a dictionary")
            kwargs = {}
        key = "db"
    else:
        url, kwargs, key = reader.config.get("db_url", DEFAULT_DB_URL), {}, "db_url"
    if not isinstance(url, str):
        reader.error(key, f"the db_url must be a string, not {_type_name(url)}")
        url = DEFAULT_DB_URL
    try:
        normalize_url(url)
    except UnsupportedDatabase as exc:
        reader.error(key, str(exc))
        url = DEFAULT_DB_URL
    return url, types.MappingProxyType(dict(kwargs))


def _on_postgres(db_url: str) -> bool:
    return db_url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def _mq(reader: _Reader, db_url: str, multi_master: bool) -> Mapping[str, object]:
    """``c['mq']`` with its type resolved: ``postgres`` (events shared through the database)
    when asked, or by default for masters that share a PostgreSQL database
    (``c['multiMaster']``); ``simple`` (in-process) otherwise. Buildbot's ``wamp`` is warned
    about and replaced by the one that fits the database."""
    given = reader.mapping("mq")
    on_postgres = _on_postgres(db_url)
    mq: dict[str, object] = {
        "type": "postgres" if multi_master and on_postgres else "simple",
        **given,
    }
    kind = mq["type"]
    known = _MQ_KEYS.get(kind) if isinstance(kind, str) else None
    if known is None:
        reader.error(
            "mq", f"c['mq'] type {kind!r} is not supported (buildyard has {sorted(_MQ_KEYS)})"
        )
        mq["type"] = "simple"
        return types.MappingProxyType(mq)
    reader.unknown_subkeys("mq", {k: v for k, v in mq.items() if k != "type"}, known)
    if kind == "postgres":
        if not on_postgres:
            reader.error(
                "mq",
                "c['mq'] type 'postgres' shares events through the database: it needs a "
                f"PostgreSQL db_url, not {db_url.split(':', 1)[0]!r}",
            )
            mq["type"] = "simple"
        retention = mq.get("retention", 600)
        if isinstance(retention, bool) or not isinstance(retention, int | float) or retention <= 0:
            reader.error(
                "mq",
                f"c['mq']['retention'] must be a positive number of seconds, not {retention!r}",
            )
            mq["retention"] = 600
    elif kind == "wamp":
        mq["type"] = "postgres" if on_postgres else "simple"
        if not any(_set_value(mq.get(k)) for k in ("router_url", "realm", "wamp_debug_level")):
            config_warning(
                f"c['mq']['type'] 'wamp' {WAMP_INSTEAD}",
                location=reader.lines.location("mq"),
            )
    return types.MappingProxyType(mq)


def _set_value(value: object) -> bool:
    return value is not None and value is not False and value not in ({}, [])


def _protocols(reader: _Reader) -> Mapping[str, Mapping[str, object]]:
    protocols: dict[str, Mapping[str, object]] = {}
    for name, options in reader.mapping("protocols").items():
        if not isinstance(options, Mapping):
            reader.error("protocols", f"c['protocols'][{name!r}] must be a dictionary")
            continue
        if name not in _PROTOCOLS:
            reader.error(
                "protocols",
                f"unknown protocol {name!r} in c['protocols']{did_you_mean(name, _PROTOCOLS)}",
            )
            continue
        if name == "msgpack_experimental_v7":
            for key in options:
                if key not in listener.OPTION_KEYS:
                    hint = did_you_mean(str(key), listener.OPTION_KEYS)
                    reader.error(
                        "protocols", f"unknown key {key!r} in c['protocols'][{name!r}]{hint}"
                    )
            try:
                listener.read_options(options)
            except ValueError as exc:
                reader.error("protocols", f"c['protocols'][{name!r}]: {exc}")
        if name == "pb":
            # Buildbot 4.3 reads only the port; ours also takes the address to listen on
            for key in options:
                if key not in ("port", "interface"):
                    hint = did_you_mean(str(key), ("port", "interface"))
                    reader.error(
                        "protocols",
                        f"unknown key {key!r} in c['protocols'][{name!r}]"
                        f" (only 'port' and 'interface'){hint}",
                    )
            try:
                msgpack_listen(options)
            except ValueError as exc:
                reader.error("protocols", f"c['protocols'][{name!r}]: {exc}")
        protocols[name] = types.MappingProxyType(dict(options))
    return types.MappingProxyType(protocols)


def _www(reader: _Reader) -> Mapping[str, object]:
    www: dict[str, object] = {"port": None, "plugins": {}}
    given = reader.mapping("www")
    reader.unknown_subkeys("www", given, _WWW_KEYS)
    www.update(given)
    port = www["port"]
    if port is not None:
        try:
            parse_port(port, allow=("tcp", "ssl", "unix"))
        except ValueError as exc:
            reader.error("www", f"c['www']['port']: {exc}")
    try:
        read_limits(www)
    except ValueError as exc:
        reader.error("www", f"c['www']: {exc}")
    _www_auth(reader, www)
    if www.get("change_hook_dialects") is not None:
        hook_dialects.check_dialects(
            www["change_hook_dialects"],
            lambda message: reader.error("www", message),
            lambda message: config_warning(message, location=reader.lines.location("www")),
        )
        if port is None and www["change_hook_dialects"]:
            config_warning(
                "c['www']['change_hook_dialects'] is set but c['www']['port'] is not: no web "
                "server runs, so no change hook can be reached",
                location=reader.lines.location("www"),
            )
    hook_dialects.check_auth(
        www.get("change_hook_auth"), lambda message: reader.error("www", message)
    )
    versions = www.get("versions")
    if versions is not None and not (
        isinstance(versions, list) and all(isinstance(v, tuple) and len(v) >= 2 for v in versions)
    ):
        reader.error(
            "www",
            f"c['www']['versions'] must be a list of (name, version) tuples, not {versions!r}",
        )
    ui = www.get("ui")
    if ui is not None:
        if not isinstance(ui, str):
            reader.error("www", f"c['www']['ui'] must be a string, not {_type_name(ui)}")
        else:
            try:
                static = ui_assets.locate(ui)
                ui_assets.locate_plugins(www.get("plugins") or {}, static)
            except ValueError as exc:
                reader.error("www", str(exc))
    plugins = www.get("plugins")
    if plugins is not None and not isinstance(plugins, dict):
        reader.error("www", f"c['www']['plugins'] must be a dict, not {_type_name(plugins)}")
    return types.MappingProxyType(www)


def _www_auth(reader: _Reader, www: Mapping[str, object]) -> None:
    # the plugins live in buildyard.master.www, which this package may not import: they are
    # known by the methods the web server calls (Buildbot's names)
    auth, authz = www.get("auth"), www.get("authz")
    is_auth = callable(getattr(auth, "getConfigDict", None)) and hasattr(auth, "authenticate")
    if auth is not None and not is_placeholder(auth) and not is_auth:
        reader.error(
            "www",
            "c['www']['auth'] must be an authentication plugin (util.UserPasswordAuth, "
            f"util.HTPasswdAuth, util.RemoteUserAuth, ...), not {auth!r}",
        )
    if getattr(auth, "handles_login", False) is True and reader.config.get("buildbotURL") is None:
        # an OAuth2 provider sends the browser back to <buildbotURL>auth/login
        config_warning(
            f"c['buildbotURL'] is not set: {type(auth).__name__} sends users back to "
            "http://localhost:8080/auth/login, which a browser elsewhere cannot reach; set "
            "c['buildbotURL'] to the address users open",
            location=reader.lines.location("www"),
        )
    is_authz = hasattr(authz, "allowRules") and hasattr(authz, "roleMatchers")
    if authz is not None and not is_placeholder(authz) and not is_authz:
        reader.error("www", f"c['www']['authz'] must be a util.Authz, not {authz!r}")
    expiration = www.get("cookie_expiration_time")
    if expiration is not None and not (
        isinstance(expiration, datetime.timedelta) and expiration.total_seconds() > 0
    ):
        reader.error(
            "www",
            "c['www']['cookie_expiration_time'] must be a positive datetime.timedelta, "
            f"not {expiration!r}",
        )


def _validation(reader: _Reader) -> Mapping[str, re.Pattern[str]]:
    validation = dict(default_validation())
    for name, pattern in reader.mapping("validation").items():
        if name not in validation:
            reader.error(
                "validation",
                f"unknown key {name!r} in c['validation']{did_you_mean(name, tuple(validation))}",
            )
        elif isinstance(pattern, re.Pattern):
            validation[name] = pattern
        elif isinstance(pattern, str):
            try:
                validation[name] = re.compile(pattern)
            except re.error as exc:
                reader.error(
                    "validation",
                    f"c['validation'][{name!r}] is not a valid regular expression: {exc}",
                )
        else:
            reader.error("validation", f"c['validation'][{name!r}] must be a regular expression")
    return types.MappingProxyType(validation)


def _caches(reader: _Reader) -> Mapping[str, int]:
    caches = {"Builds": 15, "Changes": 10}
    for name, size in reader.mapping("caches").items():
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            reader.error(
                "caches", f"c['caches'][{name!r}] must be an integer of at least 1, not {size!r}"
            )
        else:
            caches[name] = size
    for key, cache in (("buildCacheSize", "Builds"), ("changeCacheSize", "Changes")):
        if key in reader.config:
            if "caches" in reader.config:
                reader.error(key, f"c['caches'] and c[{key!r}] cannot both be set")
            size = reader.optional_int(key, minimum=1)
            if size is not None:
                caches[cache] = size
    return types.MappingProxyType(caches)


# Buildbot 4.3's default when its zstandard package is installed (buildyard always has it)
DEFAULT_LOG_COMPRESSION = "zstd"


def _log_compression(reader: _Reader) -> str:
    method = reader.string("logCompressionMethod", DEFAULT_LOG_COMPRESSION)
    if method not in _LOG_COMPRESSION:
        reader.error(
            "logCompressionMethod",
            f"c['logCompressionMethod'] must be one of {', '.join(map(repr, _LOG_COMPRESSION))}",
        )
        return DEFAULT_LOG_COMPRESSION
    return method


def _log_encoding(reader: _Reader) -> str:
    encoding = reader.string("logEncoding", "utf-8")
    try:
        codecs.lookup(encoding)
    except LookupError:
        reader.error("logEncoding", f"c['logEncoding'] {encoding!r} is not a known encoding")
        return "utf-8"
    return encoding


def _housekeeping(reader: _Reader) -> tuple[float, float]:
    given = reader.mapping("masterHouseKeeping")
    reader.unknown_subkeys("masterHouseKeeping", given, frozenset(_HOUSEKEEPING_KEYS))
    values = {"interval": 60.0, "expireAfter": 600.0}
    for name in _HOUSEKEEPING_KEYS:
        value = given.get(name, values[name])
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            values[name] = float(value)
        else:
            reader.error(
                "masterHouseKeeping",
                f"c['masterHouseKeeping'][{name!r}] must be a positive number of seconds, "
                f"not {value!r}",
            )
    if values["expireAfter"] <= values["interval"]:
        reader.error(
            "masterHouseKeeping",
            "c['masterHouseKeeping']['expireAfter'] must be longer than its 'interval'",
        )
    return values["interval"], values["expireAfter"]


def _multi_master(reader: _Reader) -> bool:
    value = reader.config.get("multiMaster", False)
    if isinstance(value, bool):
        return value
    reader.error("multiMaster", f"c['multiMaster'] must be True or False, not {value!r}")
    return False


def _collapse_requests(reader: _Reader) -> bool | Callable[..., object] | None:
    value = reader.config.get("collapseRequests")
    if value is None or isinstance(value, bool):
        return value
    return reader.callback("collapseRequests")


def read_config(config: Mapping[object, object], lines: KeyLines, source: Path) -> MasterConfig:
    """Every key of ``config`` (the BuildmasterConfig dict) checked and converted."""
    reader = _Reader(config, lines)
    _check_keys(reader)
    db_url, db_engine_kwargs = _db(reader)
    interval, expire_after = _housekeeping(reader)
    metrics = reader.mapping("metrics") if config.get("metrics") is not None else None
    multi_master = _multi_master(reader)
    www, mq = _www(reader), _mq(reader, db_url, multi_master)
    warn_no_effect(
        config,
        www,
        mq,
        lambda key, message: config_warning(message, location=lines.location(key)),
    )
    projects = _projects(reader)
    change_sources = _placeholders_only(
        reader, "change_source", "change sources", single=True, kind=ChangeSourceConfig
    )
    _check_codebase_projects(reader, change_sources, projects)
    return MasterConfig(
        source=source,
        title=reader.string("title", "Buildbot"),
        title_url=reader.url("titleURL", "http://buildbot.net/"),
        buildbot_url=reader.url("buildbotURL", "http://localhost:8080/"),
        db_url=db_url,
        db_engine_kwargs=db_engine_kwargs,
        mq=mq,
        multi_master=multi_master,
        workers=_workers(reader),
        builders=_builders(reader),
        schedulers=_placeholders_only(reader, "schedulers", "schedulers", kind=SchedulerConfig),
        change_sources=change_sources,
        services=_services(reader),
        secrets_providers=_placeholders_only(
            reader, "secretsProviders", "secret providers", kind=SecretInAFile
        ),
        projects=projects,
        codebases=_codebases(reader, projects),
        machines=_machines(reader),
        user_managers=tuple(reader.sequence("user_managers")),
        protocols=_protocols(reader),
        www=www,
        manhole=config.get("manhole"),
        metrics=types.MappingProxyType(metrics) if metrics is not None else None,
        properties=types.MappingProxyType(reader.mapping("properties")),
        collapse_requests=_collapse_requests(reader),
        prioritize_builders=reader.callback("prioritizeBuilders"),
        select_next_worker=reader.callback("select_next_worker"),
        codebase_generator=reader.callback("codebaseGenerator"),
        # without the key, Buildbot's default: links for GitHub, Bitbucket, SourceForge addresses
        revlink=reader.callback("revlink") if "revlink" in config else default_revlink_matcher,
        change_horizon=reader.optional_int("changeHorizon"),
        validation=_validation(reader),
        log_compression_limit=reader.optional_int("logCompressionLimit", 4 * 1024) or 0,
        log_compression_method=_log_compression(reader),
        log_max_size=reader.optional_int("logMaxSize"),
        log_max_tail_size=reader.optional_int("logMaxTailSize"),
        log_encoding=_log_encoding(reader),
        caches=_caches(reader),
        housekeeping_interval=interval,
        housekeeping_expire_after=expire_after,
    )

"""Keys Buildbot 4.3 accepts that buildyard reads but does not apply yet: each one set is named
in a warning (at checkconfig, start and reconfig), so nothing in master.cfg is silently ignored.

docs/config-keys.md lists every key and what buildyard does with it; a key leaves these tables
when it is applied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from buildyard.common.ui_assets import SERVER_SIDE_PLUGINS

__all__ = [
    "DB_KEYS",
    "MQ_KEYS",
    "OWN_UI_ONLY_WWW_KEYS",
    "TOP_LEVEL",
    "WWW_KEYS",
    "warn_no_effect",
]

#: c[...] keys with no effect yet, and why (shown in the warning).
TOP_LEVEL: Mapping[str, str] = {
    "caches": "buildyard keeps no object caches to size",
    "buildCacheSize": "buildyard keeps no object caches to size",
    "changeCacheSize": "buildyard keeps no object caches to size",
    "logCompressionLimit": "every finished log is compressed, whatever its size",
    "metrics": "buildyard does not collect Buildbot's metrics",
    "manhole": "there is no manhole debugging shell",
}

#: c['www'][...] keys with no effect yet, and why.
WWW_KEYS: Mapping[str, str] = {
    "allowed_origins": "no CORS headers are sent",
    "avatar_methods": "no avatars are served",
    "custom_templates_dir": "custom templates are not loaded",
    "debug": "the web server has no debug mode",
    "graphql": "there is no GraphQL API",
    "json_cache_seconds": "API responses carry no cache headers",
    "jsonp": "the API does not answer JSONP",
    "logRotateLength": "the HTTP access log is not written to a file",
    "logfileName": "the HTTP access log is not written to a file",
    "maxRotatedFiles": "the HTTP access log is not written to a file",
    "rest_minimum_version": "every REST API version is served",
    "ws_ping_interval": "the WebSocket is pinged every 30 s whatever it says",
}

#: c['www'][...] keys only Buildbot's web UI (c['www']['ui']) reads; buildyard's own UI does not.
OWN_UI_ONLY_WWW_KEYS = (
    "default_page",
    "project_widgets",
    "theme",
    "ui_default_config",
    "versions",
)

#: c['mq'][...] and c['db'][...] keys with no effect yet.
MQ_KEYS: Mapping[str, str] = {"debug": "messages are not logged"}
DB_KEYS: Mapping[str, str] = {"engine_kwargs": "the engine is made with buildyard's settings"}

_NO_EFFECT = "has no effect in buildyard yet"

#: why Buildbot's WAMP settings do nothing: what buildyard does instead
WAMP_INSTEAD = (
    "has no effect in buildyard (it has no WAMP client: masters that share a PostgreSQL "
    "database exchange their events through it, c['mq'] = {'type': 'postgres'}, which "
    "buildyard uses instead)"
)
#: c['mq'][...] keys of Buildbot's WAMP queue
WAMP_KEYS = ("router_url", "realm", "wamp_debug_level")


def _set(value: object) -> bool:
    return value is not None and value is not False and value not in ({}, [])


def warn_no_effect(
    config: Mapping[object, object],
    www: Mapping[str, object],
    mq: Mapping[str, object],
    warn: Callable[[str, str], None],
) -> None:
    """``warn(key, message)`` for each key of ``config`` that is set and has no effect;
    ``key`` is the top-level key the message is about (for its master.cfg line)."""
    for key, why in TOP_LEVEL.items():
        value = config.get(key)
        if key == "manhole" and _set(value):
            warn(
                key,
                f"c['manhole'] has no effect: buildyard has no manhole (the "
                f"{type(value).__name__} opens no debugging shell into the master; nothing "
                "listens on its port)",
            )
        elif _set(value):
            warn(key, f"c[{key!r}] {_NO_EFFECT} ({why})")
    managers = config.get("user_managers")
    if isinstance(managers, list | tuple):
        others = [m for m in managers if type(m).__name__ != "CommandlineUserManager"]
        if others:
            warn(
                "user_managers",
                f"c['user_managers'] {_NO_EFFECT} for {others!r} (only "
                "util.CommandlineUserManager is served)",
            )
    if config.get("buildbotNetUsageData") is not None:
        warn(
            "buildbotNetUsageData",
            f"c['buildbotNetUsageData'] {_NO_EFFECT} (buildyard never sends usage data)",
        )
    db = config.get("db")
    if isinstance(db, Mapping):
        for key, why in DB_KEYS.items():
            if _set(db.get(key)):
                warn("db", f"c['db'][{key!r}] {_NO_EFFECT} ({why})")
    for key, why in MQ_KEYS.items():
        if _set(mq.get(key)):
            warn("mq", f"c['mq'][{key!r}] {_NO_EFFECT} ({why})")
    for key in WAMP_KEYS:
        if _set(mq.get(key)):
            warn("mq", f"c['mq'][{key!r}] {WAMP_INSTEAD}")
    for key, why in WWW_KEYS.items():
        if _set(www.get(key)):
            warn("www", f"c['www'][{key!r}] {_NO_EFFECT} ({why})")
    if www.get("ui") is None:
        for key in OWN_UI_ONLY_WWW_KEYS:
            if _set(www.get(key)):
                warn(
                    "www",
                    f"c['www'][{key!r}] has no effect with buildyard's own web UI (only "
                    "Buildbot's, with c['www']['ui'], reads it)",
                )
    plugins = www.get("plugins")
    if isinstance(plugins, Mapping) and plugins:
        if www.get("ui") is None:
            names = ", ".join(sorted(map(str, plugins)))
            warn(
                "www",
                f"c['www']['plugins'] {_NO_EFFECT}: buildyard's own web UI does not show the "
                f"plugins {names} (Buildbot's UI, c['www']['ui'] = 'buildbot-www', does)",
            )
        else:
            for name, why in SERVER_SIDE_PLUGINS.items():
                if name in plugins:
                    warn("www", f"c['www']['plugins'][{name!r}] {_NO_EFFECT}: {why}")

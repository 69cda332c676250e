"""MasterConfig: everything master.cfg configures, read once, checked, and frozen.

Field names are snake_case versions of Buildbot's keys (``c['titleURL']`` -> ``title_url``).
Services are handed the parts they need; on reconfig the master compares the new MasterConfig
with the running one and each service applies its own difference.

One key is buildyard's own::

    c['masterHouseKeeping'] = {'interval': 60, 'expireAfter': 600}

``interval``: seconds between this master's check-ins in the masters table (and its sweep for
silent masters). ``expireAfter``: seconds without a check-in after which another master is
taken for dead, marked inactive, and its builders, schedulers and change sources freed for the
live masters. It must be longer than ``interval``.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Callable, Mapping
from pathlib import Path

from buildyard.master.builds.builder import BuilderConfig
from buildyard.master.model.projectconfig import Codebase, Project
from buildyard.master.workers.config import Worker

__all__ = ["DEFAULT_DB_URL", "KNOWN_KEYS", "MasterConfig"]

DEFAULT_DB_URL = "sqlite:///state.sqlite"

#: Every key BuildmasterConfig may have: Buildbot 4.3's, plus buildyard's masterHouseKeeping.
KNOWN_KEYS = frozenset(
    {
        "buildbotNetUsageData",
        "buildbotURL",
        "buildCacheSize",
        "builders",
        "caches",
        "change_source",
        "changeCacheSize",
        "changeHorizon",
        "codebaseGenerator",
        "codebases",
        "collapseRequests",
        "configurators",
        "db",
        "db_url",
        "logCompressionLimit",
        "logCompressionMethod",
        "logEncoding",
        "logMaxSize",
        "logMaxTailSize",
        "machines",
        "manhole",
        "masterHouseKeeping",
        "metrics",
        "mq",
        "multiMaster",
        "prioritizeBuilders",
        "projects",
        "properties",
        "protocols",
        "revlink",
        "schedulers",
        "secretsProviders",
        "select_next_worker",
        "services",
        "title",
        "titleURL",
        "user_managers",
        "validation",
        "workers",
        "www",
    }
)


def _frozen(mapping: Mapping[str, object] | None = None) -> Mapping[str, object]:
    return types.MappingProxyType(dict(mapping or {}))


def default_validation() -> Mapping[str, re.Pattern[str]]:
    """Buildbot's default patterns for values that arrive from outside (force form, hooks)."""
    return types.MappingProxyType(
        {
            "branch": re.compile(r"^[\w.+/~-]*$"),
            "revision": re.compile(r"^[ \w\.\-/]*$"),
            "property_name": re.compile(r"^[\w\.\-/~:]*$"),
            "property_value": re.compile(r"^[\w\.\-/~:]*$"),
        }
    )


Callback = Callable[..., object]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MasterConfig:
    """A loaded, valid master.cfg. Build it with
    :func:`buildyard.master.config.loader.load_master_config`."""

    #: The master.cfg it was read from.
    source: Path

    # identity
    title: str = "Buildbot"
    title_url: str = "http://buildbot.net/"
    buildbot_url: str = "http://localhost:8080/"

    # storage and messaging
    db_url: str = DEFAULT_DB_URL
    db_engine_kwargs: Mapping[str, object] = dataclasses.field(default_factory=_frozen)
    mq: Mapping[str, object] = dataclasses.field(
        default_factory=lambda: _frozen({"type": "simple"})
    )
    multi_master: bool = False

    # what runs
    workers: tuple[Worker, ...] = ()
    builders: tuple[BuilderConfig, ...] = ()
    schedulers: tuple[object, ...] = ()
    change_sources: tuple[object, ...] = ()
    services: tuple[object, ...] = ()
    secrets_providers: tuple[object, ...] = ()
    projects: tuple[Project, ...] = ()
    codebases: tuple[Codebase, ...] = ()
    machines: tuple[object, ...] = ()
    user_managers: tuple[object, ...] = ()

    # how workers and browsers reach the master: c['protocols'] = {name: {'port': ...}}
    protocols: Mapping[str, Mapping[str, object]] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )
    www: Mapping[str, object] = dataclasses.field(
        default_factory=lambda: _frozen({"port": None, "plugins": {}})
    )
    manhole: object = None
    metrics: Mapping[str, object] | None = None

    # builds
    properties: Mapping[str, object] = dataclasses.field(default_factory=_frozen)
    collapse_requests: bool | Callback | None = None
    prioritize_builders: Callback | None = None
    select_next_worker: Callback | None = None
    codebase_generator: Callback | None = None
    revlink: Callback | None = None
    change_horizon: int | None = None
    validation: Mapping[str, re.Pattern[str]] = dataclasses.field(
        default_factory=default_validation
    )

    # logs
    log_compression_limit: int = 4 * 1024
    log_compression_method: str = "zstd"
    log_max_size: int | None = None
    log_max_tail_size: int | None = None
    log_encoding: str = "utf-8"

    caches: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({"Builds": 15, "Changes": 10})
    )

    # buildyard's c['masterHouseKeeping'] (see the module docstring)
    housekeeping_interval: float = 60.0
    housekeeping_expire_after: float = 600.0

    #: What was accepted but is worth telling the operator, each "file:line: message".
    warnings: tuple[str, ...] = ()

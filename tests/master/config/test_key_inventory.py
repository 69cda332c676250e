"""Nothing in master.cfg is silently ignored (docs/config-keys.md).

Every key and sub-key Buildbot 4.3 accepts is in one of two tables: APPLIED, with the test
that shows buildyard acting on it (and setting it gives no warning), or WARNED, where setting
it gives a warning that names it and says it has no effect. The inventory is checked against
the keys the loader accepts, so a key added to the loader must be placed in one of the tables.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from buildyard.common.connections import LIMIT_KEYS
from buildyard.common.errors import ConfigErrors
from buildyard.master.config import keys, no_effect
from buildyard.master.config.loader import load_master_config
from buildyard.master.config.master_config import KNOWN_KEYS
from buildyard.master.workers import listener
from buildyard.testing.stock import buildbot_site_packages
from tests.master.config._files import WriteConfig

ROOT = Path(__file__).resolve().parents[3]

BASE = """
from buildyard.plugins import *
c = BuildmasterConfig = {}
c['workers'] = [worker.Worker("w", "p")]
c['protocols'] = {'msgpack_experimental_v7': {'port': 9989}}
c['builders'] = [util.BuilderConfig(name="b", workernames="w", factory=util.BuildFactory())]
"""


def _own_ui_value(name: str) -> str:
    """A value for a c['www'] key only Buildbot's UI reads."""
    return "[('mine', '1.0')]" if name == "versions" else "{'a': 1}"


# key -> (a master.cfg line setting it, "test file::text" of a test showing it applied)
APPLIED: dict[str, tuple[str, str]] = {
    "title": ("c['title'] = 'CI'", "tests/master/www/test_ui.py::c['title']"),
    "titleURL": ("c['titleURL'] = 'https://ci/'", "tests/master/test_master.py::title_url"),
    "buildbotURL": ("c['buildbotURL'] = 'http://ci/'", "tests/master/www/test_ui.py::buildbotURL"),
    "buildbotNetUsageData": (
        # None asks that no usage data be sent, and buildyard never sends any
        "c['buildbotNetUsageData'] = None",
        "src/buildyard/master/config/no_effect.py::buildbotNetUsageData",
    ),
    "builders": ("", "tests/master/distributor/test_distributor.py::c['builders']"),
    "workers": ("", "tests/master/test_reconfig.py::c['workers']"),
    "machines": ("c['machines'] = []", "tests/master/workers/test_machines.py::c['machines']"),
    "change_source": ("c['change_source'] = []", "tests/master/test_reconfig.py::change_source"),
    "schedulers": ("c['schedulers'] = []", "tests/master/test_reconfig.py::schedulers"),
    "services": ("c['services'] = []", "tests/master/reporters/test_generators.py::c['services']"),
    "secretsProviders": (
        "c['secretsProviders'] = []",
        "tests/master/reporters/test_mail.py::secretsProviders",
    ),
    "properties": ("c['properties'] = {'a': 'b'}", "tests/e2e/test_builds.py::c['properties']"),
    "collapseRequests": (
        "c['collapseRequests'] = False",
        "tests/master/distributor/test_distributor.py::collapseRequests",
    ),
    "prioritizeBuilders": (
        "c['prioritizeBuilders'] = lambda master, builders: builders",
        "tests/e2e/test_build_hooks.py::prioritizeBuilders",
    ),
    "select_next_worker": (
        "c['select_next_worker'] = lambda builder, workers, request: workers[0]",
        "tests/e2e/test_build_hooks.py::select_next_worker",
    ),
    "codebaseGenerator": (
        "c['codebaseGenerator'] = lambda change: 'main'",
        "tests/master/data/test_change_hooks.py::codebaseGenerator",
    ),
    "projects": (
        "c['projects'] = [util.Project('p')]",
        "tests/master/test_projects.py::c['projects']",
    ),
    "codebases": (
        "c['projects'] = [util.Project('p')]\nc['codebases'] = [util.Codebase('c', project='p')]",
        "tests/master/test_projects.py::c['codebases']",
    ),
    "revlink": ("c['revlink'] = lambda rev, repo: None", "tests/master/test_reconfig.py::revlink"),
    "validation": (
        "c['validation'] = {'branch': r'^[a-z]*$'}",
        "tests/master/test_master.py::c['validation']",
    ),
    "changeHorizon": (
        "c['changeHorizon'] = 200",
        "tests/master/test_retention.py::c['changeHorizon']",
    ),
    "logCompressionMethod": (
        "c['logCompressionMethod'] = 'gz'",
        "tests/e2e/test_builds.py::logCompressionMethod",
    ),
    "logEncoding": ("c['logEncoding'] = 'latin-1'", "tests/master/logs/test_writer.py::encoding"),
    "logMaxSize": ("c['logMaxSize'] = 1024", "tests/master/logs/test_writer.py::max_size"),
    "logMaxTailSize": ("c['logMaxTailSize'] = 512", "tests/master/logs/test_writer.py::max_tail"),
    "multiMaster": ("c['multiMaster'] = True", "tests/e2e/test_multimaster.py::multiMaster"),
    "configurators": (
        "c['configurators'] = []",
        "tests/master/config/test_loader.py::configurators",
    ),
    "db": ("c['db'] = {'db_url': 'sqlite://'}", "tests/master/test_reconfig.py::db_url"),
    "db.db_url": ("c['db'] = {'db_url': 'sqlite://'}", "tests/master/test_reconfig.py::db_url"),
    "db_url": ("c['db_url'] = 'sqlite://'", "tests/master/config/test_loader.py::c['db_url']"),
    "mq": ("c['mq'] = {'type': 'simple'}", 'tests/master/config/test_loader.py::"simple"'),
    "mq.type": ("c['mq'] = {'type': 'simple'}", 'tests/master/config/test_loader.py::"simple"'),
    "mq.retention": (
        "c['db_url'] = 'postgresql://u@127.0.0.1/x'\n"
        "c['mq'] = {'type': 'postgres', 'retention': 60}",
        'tests/master/mq/test_postgres.py::"retention": 60',
    ),
    "masterHouseKeeping": (
        "c['masterHouseKeeping'] = {'interval': 5, 'expireAfter': 30}",
        "tests/master/www/test_expired_master.py::masterHouseKeeping",
    ),
    "masterHouseKeeping.interval": (
        "c['masterHouseKeeping'] = {'interval': 5}",
        "tests/master/www/test_expired_master.py::masterHouseKeeping",
    ),
    "masterHouseKeeping.expireAfter": (
        "c['masterHouseKeeping'] = {'expireAfter': 3000}",
        "tests/master/www/test_expired_master.py::masterHouseKeeping",
    ),
    "protocols": ("", "tests/master/test_reconfig.py::protocols"),
    "protocols.pb.port": (
        "c['protocols'] = {'pb': {'port': 9989}}",
        "tests/e2e/test_pb_worker.py::'pb'",
    ),
    **{
        f"protocols.msgpack_experimental_v7.{name}": (
            f"c['protocols'] = {{'msgpack_experimental_v7': {{'port': 9989, {name!r}: {value}}}}}",
            "tests/common/test_connections.py::" + repr(name),
        )
        for name, value in (
            ("port", 9989),
            ("interface", "'127.0.0.1'"),
            ("header_timeout", 5),
            ("attach_timeout", 5),
            ("idle_timeout", 5),
            ("max_pending_connections", 5),
        )
    },
    "www": ("c['www'] = {'port': 8010}", "tests/master/test_reconfig.py::c['www']"),
    "www.port": ("c['www'] = {'port': 8010}", "tests/master/test_reconfig.py::c['www']"),
    "www.plugins": (
        # the empty dict is Buildbot's default: nothing is asked for
        "c['www'] = {'port': 8010, 'plugins': {}}",
        "src/buildyard/master/config/no_effect.py::plugins",
    ),
    "www.auth": (
        "c['www'] = {'port': 8010, 'auth': util.UserPasswordAuth({'u': 'p'})}",
        "tests/master/www/test_auth.py::auth",
    ),
    "www.authz": (
        "c['www'] = {'port': 8010, 'authz': util.Authz()}",
        "tests/master/www/test_authz.py::authz",
    ),
    "www.cookie_expiration_time": (
        "import datetime\nc['www'] = {'port': 8010, "
        "'cookie_expiration_time': datetime.timedelta(hours=1)}",
        "tests/master/www/test_auth.py::cookie_expiration_time",
    ),
    "www.change_hook_dialects": (
        "c['www'] = {'port': 8010, 'change_hook_dialects': {'base': {}}}",
        "tests/master/changes/hooks/test_dialects.py::change_hook_dialects",
    ),
    "www.change_hook_auth": (
        "from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse\n"
        "c['www'] = {'port': 8010, 'change_hook_auth': "
        "[InMemoryUsernamePasswordDatabaseDontUse(robot='beep')]}",
        "tests/master/changes/hooks/test_dialects.py::change_hook_auth",
    ),
    "www.ui": ("", "tests/master/www/test_ui.py::ui"),
    **{
        f"www.{name}": (
            f"c['www'] = {{'port': 8010, {name!r}: 30}}",
            "tests/common/test_connections.py::header_timeout",
        )
        for name in sorted(LIMIT_KEYS)
    },
    # read by Buildbot's web UI only, and passed to it: a warning with buildyard's own UI
    **{
        f"www.{name}": ("", "tests/master/www/test_ui.py::ui_default_config")
        for name in no_effect.OWN_UI_ONLY_WWW_KEYS
        if name != "versions"
    },
    "www.versions": ("", "tests/master/www/test_ui.py::test_the_users_versions_follow"),
}

# key -> a master.cfg line setting it; its warning names the key and says it has no effect
WARNED: dict[str, str] = {
    "caches": "c['caches'] = {'Builds': 40}",
    "buildCacheSize": "c['buildCacheSize'] = 40",
    "changeCacheSize": "c['changeCacheSize'] = 40",
    "logCompressionLimit": "c['logCompressionLimit'] = 16384",
    "metrics": "c['metrics'] = {'log_interval': 10, 'periodic_interval': 10}",
    "manhole": "c['manhole'] = object()",
    "user_managers": "c['user_managers'] = [object()]",
    "buildbotNetUsageData": "c['buildbotNetUsageData'] = 'basic'",
    "db.engine_kwargs": "c['db'] = {'db_url': 'sqlite://', 'engine_kwargs': {'echo': True}}",
    "mq.debug": "c['mq'] = {'type': 'simple', 'debug': True}",
    "mq.router_url": "c['mq'] = {'type': 'wamp', 'router_url': 'ws://127.0.0.1:8080/ws'}",
    "mq.realm": "c['mq'] = {'type': 'wamp', 'realm': 'realm1'}",
    "mq.wamp_debug_level": "c['mq'] = {'type': 'wamp', 'wamp_debug_level': 'info'}",
    "www.allowed_origins": "c['www'] = {'port': 8010, 'allowed_origins': ['*']}",
    "www.avatar_methods": "c['www'] = {'port': 8010, 'avatar_methods': [object()]}",
    "www.custom_templates_dir": "c['www'] = {'port': 8010, 'custom_templates_dir': 'templates'}",
    "www.debug": "c['www'] = {'port': 8010, 'debug': True}",
    "www.graphql": "c['www'] = {'port': 8010, 'graphql': {'debug': True}}",
    "www.json_cache_seconds": "c['www'] = {'port': 8010, 'json_cache_seconds': 10}",
    "www.jsonp": "c['www'] = {'port': 8010, 'jsonp': True}",
    "www.logRotateLength": "c['www'] = {'port': 8010, 'logRotateLength': 1000}",
    "www.logfileName": "c['www'] = {'port': 8010, 'logfileName': 'http.log'}",
    "www.maxRotatedFiles": "c['www'] = {'port': 8010, 'maxRotatedFiles': 3}",
    "www.rest_minimum_version": "c['www'] = {'port': 8010, 'rest_minimum_version': 2}",
    "www.ws_ping_interval": "c['www'] = {'port': 8010, 'ws_ping_interval': 30}",
    "www.plugins": "c['www'] = {'port': 8010, 'plugins': {'waterfall_view': {}}}",
    **{
        f"www.{name}": f"c['www'] = {{'port': 8010, {name!r}: {_own_ui_value(name)}}}"
        for name in no_effect.OWN_UI_ONLY_WWW_KEYS
    },
}

# applied keys whose reference is the code that applies them: the values in APPLIED ask for
# nothing (no usage data sent, no UI plugin), so no test can show more than the absence of a warning
SHOWN_IN_SOURCE = frozenset({"buildbotNetUsageData", "www.plugins"})

# Buildbot's keys that buildyard refuses with an error when they are given content (the
# classes behind them are not implemented): never silently ignored either.
REFUSED: tuple[str, ...] = ()


def _label(key: str) -> str:
    """``www.debug`` -> ``c['www']['debug']``"""
    return "c" + "".join(f"[{part!r}]" for part in key.split("."))


def _write(write_config: WriteConfig, line: str) -> Path:
    return write_config(BASE + line + "\n")


def test_the_inventory_covers_every_key_the_loader_accepts() -> None:
    top = {key.split(".")[0] for key in (*APPLIED, *WARNED)}
    assert top | set(REFUSED) == set(KNOWN_KEYS)
    www = {key.removeprefix("www.") for key in (*APPLIED, *WARNED) if key.startswith("www.")}
    assert www == set(keys._WWW_KEYS)
    msgpack = "protocols.msgpack_experimental_v7."
    assert {key.removeprefix(msgpack) for key in APPLIED if key.startswith(msgpack)} == set(
        listener.OPTION_KEYS
    )
    # every key the warning tables name is in WARNED
    named = {
        *no_effect.TOP_LEVEL,
        *(f"www.{k}" for k in no_effect.WWW_KEYS),
        *(f"mq.{k}" for k in no_effect.MQ_KEYS),
        *(f"mq.{k}" for k in no_effect.WAMP_KEYS),
        *(f"db.{k}" for k in no_effect.DB_KEYS),
    }
    assert named <= set(WARNED)


@pytest.mark.parametrize("key", sorted(APPLIED))
def test_an_applied_key_gives_no_warning(
    key: str, write_config: WriteConfig, basedir: Path
) -> None:
    line, shown_by = APPLIED[key]
    _write(write_config, line)
    assert load_master_config(basedir).warnings == ()
    path, text = shown_by.split("::", 1)
    assert path.startswith("tests/") or key in SHOWN_IN_SOURCE, shown_by
    assert text in (ROOT / path).read_text(encoding="utf-8"), shown_by


@pytest.mark.parametrize("key", sorted(WARNED))
def test_a_key_with_no_effect_is_named_in_a_warning(
    key: str, write_config: WriteConfig, basedir: Path
) -> None:
    path = _write(write_config, WARNED[key])
    warnings = load_master_config(basedir).warnings
    assert len(warnings) == 1, warnings
    line = len(path.read_text(encoding="utf-8").splitlines())
    assert warnings[0].startswith(f"{path}:{line}: {_label(key)} has no effect")


def test_the_plugins_warning_names_each_plugin(write_config: WriteConfig, basedir: Path) -> None:
    _write(write_config, "c['www'] = {'plugins': dict(waterfall_view={}, grid_view={})}")
    (warning,) = load_master_config(basedir).warnings
    assert "own web UI does not show the plugins grid_view, waterfall_view" in warning


def test_with_buildbots_ui_the_plugins_beside_it_are_applied(
    write_config: WriteConfig, basedir: Path
) -> None:
    # scripts/setup.sh installs buildbot-www and the view plugins in the stock venv
    ui = buildbot_site_packages() / "buildbot_www"
    _write(
        write_config,
        f"c['www'] = {{'ui': {str(ui)!r}, 'plugins': dict(waterfall_view={{}}, grid_view={{}})}}",
    )
    assert load_master_config(basedir).warnings == ()


def test_a_plugin_not_installed_is_refused_and_badges_warned(
    write_config: WriteConfig, basedir: Path
) -> None:
    ui = buildbot_site_packages() / "buildbot_www"
    path = _write(
        write_config,
        f"c['www'] = {{'ui': {str(ui)!r}, 'plugins': dict(nope_view={{}}, badges={{}})}}",
    )
    with pytest.raises(ConfigErrors) as info:
        load_master_config(basedir)
    message = str(info.value)
    assert "no Buildbot UI plugin 'nope_view'" in message
    assert "pip install buildbot-nope-view" in message
    path.write_text(
        path.read_text().replace("nope_view={}, ", ""), encoding="utf-8"
    )  # badges alone: served by nothing, warned
    (warning,) = load_master_config(basedir).warnings
    assert "c['www']['plugins']['badges'] has no effect" in warning


def test_buildbots_ui_reads_the_keys_buildyards_own_ui_does_not(
    write_config: WriteConfig, basedir: Path
) -> None:
    settings = ", ".join(
        f"{name!r}: {_own_ui_value(name)}" for name in no_effect.OWN_UI_ONLY_WWW_KEYS
    )
    (basedir / "ui").mkdir()
    (basedir / "ui" / "index.html").write_text("<html></html>", encoding="utf-8")
    ui = str(basedir / "ui")
    _write(write_config, f"c['www'] = {{'port': 8010, 'ui': {ui!r}, {settings}}}")
    assert load_master_config(basedir).warnings == ()


def test_caches_are_still_checked_and_read(write_config: WriteConfig, basedir: Path) -> None:
    _write(write_config, "c['caches'] = {'Builds': 40}")
    assert dict(load_master_config(basedir).caches) == {"Builds": 40, "Changes": 10}


def test_versions_must_be_name_and_version_tuples(write_config: WriteConfig, basedir: Path) -> None:
    _write(write_config, "c['www'] = {'versions': ['mine 1.0']}")
    with pytest.raises(ConfigErrors) as info:
        load_master_config(basedir)
    (error,) = info.value.errors
    assert "c['www']['versions'] must be a list of (name, version) tuples" in error.message

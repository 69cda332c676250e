"""load_master_config: a good config, all mistakes at once with file:line, Buildbot's sample."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import pytest

from buildyard.common.errors import ConfigError, ConfigErrors
from buildyard.master.builds.builder import BuilderConfig
from buildyard.master.builds.factory import BuildFactory
from buildyard.master.config.loader import load_master_config
from buildyard.master.config.master_config import MasterConfig
from buildyard.master.workers.config import LocalWorker, Worker
from tests.master.config._files import WriteConfig, buildbot_site_packages, line_of

GOOD = """
from buildbot.plugins import *

c = BuildmasterConfig = {}
c['workers'] = [
    worker.Worker("linux-1", "secret-1", max_builds=2, properties={"os": "linux"}),
    worker.Worker("linux-2", "secret-2"),
]
c['protocols'] = {'msgpack_experimental_v7': {'port': 9989}}

factory = util.BuildFactory()
c['builders'] = [
    util.BuilderConfig(name="runtests", workernames=["linux-1", "linux-2"], factory=factory,
                       tags=["fast", "py"]),
    util.BuilderConfig(name="docs build", workername="linux-1", factory=factory),
]
c['schedulers'] = []
c['change_source'] = []
c['services'] = []
c['title'] = "Buildyard CI"
c['titleURL'] = "https://ci.example.org"
c['buildbotURL'] = "http://localhost:8010/"
c['www'] = dict(port=8010)
c['db'] = {'db_url': "sqlite:///other.sqlite"}
c['properties'] = {'owner': 'ci-team'}
c['logCompressionMethod'] = 'bz2'
c['logMaxSize'] = 1024 * 1024
c['collapseRequests'] = False
c['buildbotNetUsageData'] = None
c['masterHouseKeeping'] = {'interval': 5, 'expireAfter': 30}
"""


def _errors(basedir: Path) -> list[ConfigError]:
    with pytest.raises(ConfigErrors) as info:
        load_master_config(basedir)
    return info.value.errors


def _where(errors: list[ConfigError]) -> list[tuple[str, int, str]]:
    return [(e.location.file, e.location.line, e.message) for e in errors if e.location]


# -- a good configuration -------------------------------------------------------------------------


def test_url_keys_set_to_none_take_their_defaults(write_config: WriteConfig, basedir: Path) -> None:
    # Buildbot 4.3 accepts None for titleURL and buildbotURL (a real master.cfg sets
    # c['titleURL'] = None): the key is as good as not set
    write_config(
        GOOD.replace('"https://ci.example.org"', "None").replace('"http://localhost:8010/"', "None")
    )

    config = load_master_config(basedir)

    assert config.title_url == "http://buildbot.net/"
    assert config.buildbot_url == "http://localhost:8080/"


def test_good_config_loads_into_master_config(write_config: WriteConfig, basedir: Path) -> None:
    path = write_config(GOOD)

    config = load_master_config(basedir)

    assert isinstance(config, MasterConfig)
    assert config.source == path
    assert config.title == "Buildyard CI"
    assert config.title_url == "https://ci.example.org/"  # Buildbot adds the trailing slash
    assert config.buildbot_url == "http://localhost:8010/"
    assert config.db_url == "sqlite:///other.sqlite"
    assert config.www["port"] == 8010
    assert dict(config.protocols) == {"msgpack_experimental_v7": {"port": 9989}}
    assert dict(config.properties) == {"owner": "ci-team"}
    assert config.log_compression_method == "bz2"
    assert config.log_max_size == 1024 * 1024
    assert config.collapse_requests is False
    assert config.multi_master is False
    assert (config.housekeeping_interval, config.housekeeping_expire_after) == (5.0, 30.0)
    assert config.warnings == ()

    assert [w.name for w in config.workers] == ["linux-1", "linux-2"]
    first = config.workers[0]
    assert isinstance(first, Worker)
    assert (first.password, first.max_builds, first.properties) == (
        "secret-1",
        2,
        {"os": "linux"},
    )

    runtests, docs = config.builders
    assert isinstance(runtests, BuilderConfig)
    assert runtests.workernames == ("linux-1", "linux-2")
    assert runtests.tags == ("fast", "py")
    assert isinstance(runtests.factory, BuildFactory)
    assert docs.workernames == ("linux-1",)
    assert docs.builddir == "docs_build"
    assert docs.defined_at is not None
    assert docs.defined_at.line == line_of(path, 'name="docs build"')


def test_defaults_when_keys_are_absent(write_config: WriteConfig, basedir: Path) -> None:
    write_config(
        """
        from buildyard.plugins import *
        c = BuildmasterConfig = {}
        c['workers'] = [worker.Worker("w", "p")]
        c['protocols'] = {'msgpack_experimental_v7': {'port': 9989}}
        c['builders'] = [util.BuilderConfig(name="b", workernames="w", factory=util.BuildFactory())]
        """
    )
    config = load_master_config(basedir)
    assert config.db_url == "sqlite:///state.sqlite"
    assert dict(config.mq) == {"type": "simple"}
    assert config.title == "Buildbot"
    assert (config.housekeeping_interval, config.housekeeping_expire_after) == (60.0, 600.0)
    assert config.www["port"] is None
    # Buildbot 4.3's default when zstandard is installed, as it always is with buildyard
    assert config.log_compression_method == "zstd"
    # Buildbot's default revision links (GitHub, Bitbucket, SourceForge)
    assert config.revlink is not None
    assert config.revlink("abc", "git@github.com:o/r.git") == "https://github.com/o/r/commit/abc"


def test_revlink_match_from_buildbot_revlinks(write_config: WriteConfig, basedir: Path) -> None:
    write_config(
        """
        from buildbot.plugins import *
        from buildbot.revlinks import RevlinkMultiplexer, GithubRevlink
        c = BuildmasterConfig = {}
        c['workers'] = [worker.Worker("w", "p")]
        c['protocols'] = {'msgpack_experimental_v7': {'port': 9989}}
        c['builders'] = [util.BuilderConfig(name="b", workernames="w", factory=util.BuildFactory())]
        c['revlink'] = RevlinkMultiplexer(
            util.RevlinkMatch([r'https://git.example.org/(.*)$'], r'https://web/\\1/%s'),
            GithubRevlink,
        )
        """
    )
    config = load_master_config(basedir)
    assert config.revlink is not None
    assert config.revlink("abc", "https://git.example.org/lamp") == "https://web/lamp/abc"
    assert config.revlink("abc", "https://github.com/o/r") == "https://github.com/o/r/commit/abc"


def test_db_url_key_when_no_db_dict(write_config: WriteConfig, basedir: Path) -> None:
    write_config(
        GOOD.replace(
            "c['db'] = {'db_url': \"sqlite:///other.sqlite\"}", "c['db_url'] = 'sqlite:///x.db'"
        )
    )
    assert load_master_config(basedir).db_url == "sqlite:///x.db"


def test_pb_protocol_is_accepted_in_buildbot_spellings(
    write_config: WriteConfig, basedir: Path
) -> None:
    write_config(GOOD.replace("'msgpack_experimental_v7'", "'pb'"))
    config = load_master_config(basedir)
    assert not config.warnings
    assert "pb" in config.protocols
    write_config(
        GOOD.replace("'msgpack_experimental_v7'", "'pb'").replace(
            "{'port': 9989}", "{'port': 'tcp:nine'}"
        )
    )
    with pytest.raises(ConfigErrors, match="c\\['protocols'\\]\\['pb'\\]: port 'tcp:nine'"):
        load_master_config(basedir)
    # Buildbot reads only the port: anything else would be silently ignored
    write_config(
        GOOD.replace("'msgpack_experimental_v7'", "'pb'").replace(
            "{'port': 9989}", "{'port': 9989, 'max_pending_connections': 10}"
        )
    )
    with pytest.raises(
        ConfigErrors, match=r"unknown key 'max_pending_connections' in c\['protocols'\]\['pb'\]"
    ):
        load_master_config(basedir)


# -- every mistake, once, with its file and line --------------------------------------------------


def test_three_mistakes_are_reported_together_with_their_lines(
    write_config: WriteConfig, basedir: Path
) -> None:
    path = write_config(
        """
        from buildbot.plugins import *

        c = BuildmasterConfig = {}
        c['titel'] = "Hello"
        factory = util.BuildFactory()
        c['workers'] = [
            worker.Worker("good", "pass"),
            worker.Worker("bad-password", 1234),
        ]
        c['protocols'] = {'msgpack_experimental_v7': {'port': 9989}}
        c['builders'] = [
            util.BuilderConfig(name="b", workernames=["good", "missing"], factory=factory),
        ]
        """
    )
    errors = _errors(basedir)

    assert len(errors) == 3, errors
    found = _where(errors)  # in file order
    file = str(path)
    assert [(f, line) for f, line, _ in found] == [
        (file, line_of(path, "c['titel']")),
        (file, line_of(path, '"bad-password", 1234')),
        (file, line_of(path, 'name="b"')),
    ]
    titel, password, builder = (message for _, _, message in found)
    assert "unknown BuildmasterConfig key 'titel'; did you mean 'title'?" in titel
    assert "worker 'bad-password': password must be a string" in password
    assert "builder 'b' uses unknown worker 'missing'" in builder


def test_unknown_keys_each_get_their_own_line(write_config: WriteConfig, basedir: Path) -> None:
    path = write_config(
        GOOD + "c['slaves'] = []\n" + "c['TitleURL'] = 'x'\n" + "c['frobnicate'] = 1\n"
    )
    found = {line: message for _, line, message in _where(_errors(basedir))}
    assert found == {
        line_of(path, "c['slaves']"): "unknown BuildmasterConfig key 'slaves' "
        "(Buildbot 0.8's name for c['workers'])",
        line_of(path, "c['TitleURL']"): "unknown BuildmasterConfig key 'TitleURL'; "
        "did you mean 'titleURL'?",
        line_of(path, "c['frobnicate']"): "unknown BuildmasterConfig key 'frobnicate'",
    }


def test_bad_values_point_at_their_keys(write_config: WriteConfig, basedir: Path) -> None:
    path = write_config(
        GOOD
        + "c['title'] = 42\n"
        + "c['www'] = {'prot': 8010}\n"
        + "c['logCompressionMethod'] = 'xz'\n"
        + "c['masterHouseKeeping'] = {'interval': 60, 'expireAfter': 10}\n"
        + "c['mq'] = {'type': 'zeromq'}\n"
        + "c['logEncoding'] = 'no-such-codec'\n"
    )
    found = {line: message for _, line, message in _where(_errors(basedir))}
    assert set(found) == {
        line_of(path, "c['title'] = 42"),
        line_of(path, "c['www'] = {'prot'"),
        line_of(path, "c['logCompressionMethod'] = 'xz'"),
        line_of(path, "'expireAfter': 10"),
        line_of(path, "c['mq']"),
        line_of(path, "c['logEncoding']"),
    }
    assert "c['title'] must be a string, not int" in found[line_of(path, "c['title'] = 42")]
    assert "did you mean 'port'?" in found[line_of(path, "c['www'] = {'prot'")]
    assert "'no-such-codec' is not a known encoding" in found[line_of(path, "c['logEncoding']")]


def test_connection_limits_are_read_and_checked(write_config: WriteConfig, basedir: Path) -> None:
    write_config(
        GOOD
        + "c['protocols'] = {'msgpack_experimental_v7': {'port': 9989, 'header_timeout': 5,"
        + " 'attach_timeout': 60, 'max_pending_connections': 10}}\n"
        + "c['www'] = {'port': 8010, 'header_timeout': 2.5, 'idle_timeout': 300,"
        + " 'max_pending_connections': 100}\n"
    )
    config = load_master_config(basedir)
    assert config.www["max_pending_connections"] == 100
    assert config.protocols["msgpack_experimental_v7"]["attach_timeout"] == 60

    path = write_config(
        GOOD
        + "c['protocols'] = {'msgpack_experimental_v7': {'port': 9989, 'attach_timout': 5}}\n"
        + "c['www'] = {'port': 8010, 'header_timeout': {}}\n"
    )
    found = {line: message for _, line, message in _where(_errors(basedir))}
    assert found == {
        line_of(path, "c['protocols'] = {'msgpack_experimental_v7': {'port': 9989, 'attach_"): (
            "unknown key 'attach_timout' in c['protocols']['msgpack_experimental_v7']; "
            "did you mean 'attach_timeout'?"
        ),
        line_of(path, "c['www'] = {'port': 8010, 'header_timeout': {}}"): (
            "c['www']: 'header_timeout' must be a number of seconds, not dict"
        ),
    }
    for options, named in [
        ("'max_pending_connections': 0", "'max_pending_connections' must be a positive integer"),
        ("'attach_timeout': -1", "'attach_timeout' must be a positive number of seconds"),
        ("'idle_timeout': float('inf')", "'idle_timeout' must be a positive number of seconds"),
    ]:
        write_config(
            GOOD + f"c['protocols'] = {{'msgpack_experimental_v7': {{'port': 1, {options}}}}}\n"
        )
        [error] = _errors(basedir)
        assert named in error.message


def test_cross_references(write_config: WriteConfig, basedir: Path) -> None:
    path = write_config(
        """
        from buildbot.plugins import *
        c = BuildmasterConfig = {}
        f = util.BuildFactory()
        c['workers'] = [worker.Worker("w", "p"), worker.Worker("w", "q")]  # dup worker
        c['protocols'] = {'msgpack_experimental_v7': {'port': 9989}}
        c['builders'] = [
            util.BuilderConfig(name="b", workernames=["w"], factory=f),
            util.BuilderConfig(name="b", workernames=["w"], factory=f),  # dup builder
            util.BuilderConfig(name="c", workernames=["w", "x", "y"], factory=f),  # unknowns
        ]
        """
    )
    found = {(line, message) for _, line, message in _where(_errors(basedir))}
    assert found == {
        (line_of(path, "# dup worker"), "duplicate worker name 'w'"),
        (line_of(path, "# dup builder"), "duplicate builder name 'b'"),
        (line_of(path, "# unknowns"), "builder 'c' uses unknown workers 'x', 'y'"),
    }


def test_workers_without_a_protocol_port_is_a_warning(
    write_config: WriteConfig, basedir: Path
) -> None:
    path = write_config(GOOD.replace("c['protocols'] = ", "_protocols = "))
    config = load_master_config(basedir)
    assert config.warnings == (
        f"{path}:{line_of(path, 'c = BuildmasterConfig')}: workers are configured, but "
        "c['protocols'] gives them no port to connect to",
    )


def test_empty_config_has_no_workers_and_no_builders(
    write_config: WriteConfig, basedir: Path
) -> None:
    write_config("BuildmasterConfig = {}\n")
    messages = sorted(e.message for e in _errors(basedir))
    assert messages == ["no builders are configured", "no workers are configured"]


def test_missing_buildmaster_config(write_config: WriteConfig, basedir: Path) -> None:
    path = write_config("c = {}\n")
    assert _where(_errors(basedir)) == [
        (str(path), 1, "master.cfg does not define BuildmasterConfig")
    ]


def test_missing_file_and_basedir(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors, match="does not exist"):
        load_master_config(tmp_path)
    with pytest.raises(ConfigErrors, match=r"basedir .* does not exist"):
        load_master_config(tmp_path / "nowhere")


# -- master.cfg that does not run -----------------------------------------------------------------


def test_syntax_error_has_file_and_line(write_config: WriteConfig, basedir: Path) -> None:
    path = write_config("c = BuildmasterConfig = {}\nc['title'] = = 'x'\n")
    [(file, line, message)] = _where(_errors(basedir))
    assert (file, line) == (str(path), 2)
    assert message.startswith("syntax error: ")


def test_exception_is_reported_at_the_failing_line(
    write_config: WriteConfig, basedir: Path
) -> None:
    path = write_config(
        """
        from buildbot.plugins import *
        c = BuildmasterConfig = {}
        c['workers'] = [worker.Worker("w", "p")]
        c['title'] = undefined_name
        """
    )
    assert _where(_errors(basedir)) == [
        (
            str(path),
            line_of(path, "undefined_name"),
            "NameError: name 'undefined_name' is not defined",
        )
    ]


def test_placeholders_reported_before_an_exception_are_kept(
    write_config: WriteConfig, basedir: Path
) -> None:
    path = write_config(
        """
        from buildbot.plugins import *
        s = steps.P4(p4base="make")
        1 / 0
        """
    )
    assert [(line, message) for _, line, message in _where(_errors(basedir))] == [
        (
            line_of(path, "P4"),
            "steps.P4 is not implemented yet (steps)",
        ),
        (line_of(path, "1 / 0"), "ZeroDivisionError: division by zero"),
    ]


def test_exception_in_an_imported_neighbour_points_into_it(
    write_config: WriteConfig, basedir: Path
) -> None:
    helper = basedir / "broken_helper_mod.py"
    helper.write_text("X = 1\nraise RuntimeError('boom')\n")
    write_config("import broken_helper_mod\nBuildmasterConfig = {}\n")
    assert _where(_errors(basedir)) == [(str(helper), 2, "RuntimeError: boom")]


def test_config_error_from_master_cfg_is_collected(
    write_config: WriteConfig, basedir: Path
) -> None:
    path = write_config(
        GOOD
        + "from buildbot import config\n"
        + "config.error('bad thing one')\n"
        + "config.error('bad thing two')\n"
    )
    found = [(line, message) for _, line, message in _where(_errors(basedir))]
    assert found == [
        (line_of(path, "'bad thing one'"), "bad thing one"),
        (line_of(path, "'bad thing two'"), "bad thing two"),
    ]


# -- import buildbot... ---------------------------------------------------------------------------


def test_unsupported_and_buildbot_08_imports_have_distinct_messages(
    write_config: WriteConfig, basedir: Path
) -> None:
    path = write_config("import buildbot.frobnicator\nBuildmasterConfig = {}\n")
    [(_, line, unsupported)] = _where(_errors(basedir))
    assert line == 1
    assert unsupported.startswith(
        "buildbot.frobnicator is not a Buildbot module buildyard supports"
    )

    write_config("from buildbot.status import html\nBuildmasterConfig = {}\n")
    [(_, line, old)] = _where(_errors(basedir))
    assert line == 1
    assert old.startswith("buildbot.status is from Buildbot 0.8")
    assert "reporters" in old

    write_config("from buildbot.steps.slave import RemoveDirectory\nBuildmasterConfig = {}\n")
    [(_, _, old_steps)] = _where(_errors(basedir))
    assert "buildbot.steps.worker" in old_steps
    assert path.exists()


def test_no_buildbot_module_stays_in_sys_modules(write_config: WriteConfig, basedir: Path) -> None:
    write_config(
        GOOD.replace(
            "from buildbot.plugins import *",
            "from buildbot.plugins import *\n"
            "import buildbot.process.results\n"
            "from buildbot.steps.shell import ShellCommand as _S",
        )
    )
    path_before = list(sys.path)
    meta_path_before = list(sys.meta_path)
    load_master_config(basedir)
    assert [m for m in sys.modules if m == "buildbot" or m.startswith("buildbot.")] == []
    assert sys.path == path_before
    assert sys.meta_path == meta_path_before

    write_config("import buildbot.plugins\nraise ValueError('x')\n")
    _errors(basedir)
    assert [m for m in sys.modules if m == "buildbot" or m.startswith("buildbot.")] == []


def test_a_real_buildbot_in_sys_modules_is_set_aside_and_restored(
    write_config: WriteConfig, basedir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = types.ModuleType("buildbot")
    monkeypatch.setitem(sys.modules, "buildbot", real)
    write_config(GOOD)
    config = load_master_config(basedir)
    assert isinstance(config.workers[0], Worker)  # ours, not the "real" one
    assert sys.modules["buildbot"] is real


def test_neighbour_module_importing_buildbot_works_and_is_reread(
    write_config: WriteConfig, basedir: Path
) -> None:
    helper = basedir / "ci_helpers_mod.py"
    helper.write_text(
        "from buildbot.plugins import util\n"
        "TITLE = 'first'\n"
        "def factory():\n"
        "    return util.BuildFactory()\n"
    )
    write_config(
        GOOD
        + "import ci_helpers_mod\n"
        + "c['title'] = ci_helpers_mod.TITLE\n"
        + "c['builders'][0] = util.BuilderConfig(\n"
        + "    name='runtests', workername='linux-1', factory=ci_helpers_mod.factory())\n"
    )
    assert load_master_config(basedir).title == "first"
    assert "ci_helpers_mod" not in sys.modules

    helper.write_text(helper.read_text().replace("'first'", "'second, reread'"))
    assert load_master_config(basedir).title == "second, reread"
    assert "ci_helpers_mod" not in sys.modules


def test_error_built_in_a_neighbour_points_into_it(
    write_config: WriteConfig, basedir: Path
) -> None:
    helper = basedir / "workers_mod.py"
    helper.write_text("from buildbot.plugins import worker\nW = worker.Worker('w', None)\n")
    write_config(GOOD + "import workers_mod\n")
    assert _where(_errors(basedir)) == [
        (
            str(helper),
            2,
            "worker 'w': password must be a string or a secret (util.Secret, "
            "util.Interpolate), not NoneType",
        )
    ]


# -- Buildbot 4.3's own sample --------------------------------------------------------------------


def test_buildbot_sample_config_loads(basedir: Path) -> None:
    sample = buildbot_site_packages() / "buildbot" / "scripts" / "sample.cfg"
    shutil.copyfile(sample, basedir / "master.cfg")
    config = load_master_config(basedir)
    assert [(type(s).__name__, getattr(s, "name", None)) for s in config.schedulers] == [
        ("SingleBranchScheduler", "all"),
        ("ForceScheduler", "force"),
    ]


# -- Python that Buildbot configs use -------------------------------------------------------------


def test_master_cfg_may_define_dataclasses_with_future_annotations(
    write_config: WriteConfig, basedir: Path
) -> None:
    write_config(
        "from __future__ import annotations\n"
        "import dataclasses\n"
        "@dataclasses.dataclass\n"
        "class Site:\n"
        "    name: str\n" + GOOD + "c['title'] = Site('dc').name\n"
    )
    assert load_master_config(basedir).title == "dc"


def test_builder_given_as_a_dict_and_a_configurator(
    write_config: WriteConfig, basedir: Path
) -> None:
    write_config(
        GOOD
        + "class AddTitle:\n"
        + "    def configure(self, config):\n"
        + "        config['title'] = 'configured'\n"
        + "c['configurators'] = [AddTitle()]\n"
        + "c['builders'].append(\n"
        + "    {'name': 'as-dict', 'workernames': ['linux-1'], 'factory': factory})\n"
    )
    config = load_master_config(basedir)
    assert config.title == "configured"
    assert [b.name for b in config.builders] == ["runtests", "docs build", "as-dict"]


def test_symlinked_master_cfg_keeps_its_lines(tmp_path: Path, basedir: Path) -> None:
    real = tmp_path / "elsewhere.cfg"
    real.write_text(
        "from buildbot.plugins import *\nw = worker.Worker('w', 5)\nBuildmasterConfig = {}\n"
    )
    (basedir / "master.cfg").symlink_to(real)
    errors = _errors(basedir)
    password = [e for e in errors if "password" in e.message]
    assert len(password) == 1
    assert password[0].location is not None
    assert password[0].location.line == 2


def test_pb_change_source_needs_a_port_and_a_user_of_its_own(
    write_config: WriteConfig, basedir: Path
) -> None:
    write_config(
        GOOD.replace("c['change_source'] = []", "c['change_source'] = [changes.PBChangeSource()]")
    )
    [error] = _errors(basedir)
    assert "No port specified for PBChangeSource, and no worker port configured" in error.message
    on_pb = GOOD.replace("'msgpack_experimental_v7'", "'pb'")
    write_config(
        on_pb.replace(
            "c['change_source'] = []",
            "c['change_source'] = [changes.PBChangeSource(user='linux-1')]",
        )
    )
    [error] = _errors(basedir)
    assert "user name 'linux-1' on PB port 9989 is taken by worker 'linux-1'" in error.message
    write_config(
        on_pb.replace(
            "c['change_source'] = []",
            "c['change_source'] = [changes.PBChangeSource(port=9999)]",
        ).replace(
            "c['schedulers'] = []",
            "c['schedulers'] = [schedulers.Try_Userpass('t', ['runtests'], 9999,"
            " [('change', 'x')])]",
        )
    )
    [error] = _errors(basedir)
    taken = "scheduler 't': user name 'change' on PB port 9999 is taken by change source"
    assert taken in error.message
    write_config(
        on_pb.replace(
            "c['change_source'] = []",
            "c['change_source'] = [changes.PBChangeSource(user='linux-1', port=9999),"
            " changes.PBChangeSource(prefix='trunk/')]",
        )
    )
    config = load_master_config(basedir)
    assert [s.name for s in config.change_sources] == [  # type: ignore[attr-defined]
        "PBChangeSource:9999",
        "PBChangeSource:trunk/:None",
    ]
    write_config(
        GOOD.replace(
            "c['change_source'] = []",
            "c['change_source'] = [changes.PBChangeSource(passwd=3, port='tcp:x')]",
        )
    )
    messages = [e.message for e in _errors(basedir)]
    assert any("passwd must be a non-empty string" in m for m in messages)
    assert any("PBChangeSource: port 'tcp:x'" in m for m in messages)


def test_a_local_worker_needs_no_protocol_port_nor_password(
    write_config: WriteConfig, basedir: Path
) -> None:
    write_config(
        """
        from buildbot.plugins import *
        c = BuildmasterConfig = {}
        c['workers'] = [worker.LocalWorker("local", max_builds=2, workdir="here")]
        c['builders'] = [util.BuilderConfig(name="b", workernames=["local"],
                                            factory=util.BuildFactory())]
        """
    )
    config = load_master_config(basedir)
    assert config.warnings == ()
    (local,) = config.workers
    assert isinstance(local, LocalWorker)
    assert (local.name, local.max_builds, local.workdir) == ("local", 2, "here")
    # generated, and the same each time master.cfg is read again (a reconfig keeps it)
    assert isinstance(local.password, str) and len(local.password) >= 32
    assert load_master_config(basedir).workers[0].password == local.password
    assert worker_with_password("other") != local.password


def worker_with_password(name: str) -> object:
    return LocalWorker(name).password


def test_a_local_worker_refuses_a_password_and_a_bad_workdir(
    write_config: WriteConfig, basedir: Path
) -> None:
    write_config(
        """
        from buildbot.plugins import *
        c = BuildmasterConfig = {}
        c['workers'] = [worker.LocalWorker("a", password="p"),
                        worker.LocalWorker("b", workdir=42)]
        """
    )
    messages = [str(e) for e in _errors(basedir)]
    assert any("takes no password" in m for m in messages), messages
    assert any("workdir must be a non-empty string" in m for m in messages), messages


def test_pb_change_source_passwd_may_be_a_secret_but_not_another_object() -> None:
    from buildyard.common.errors import ConfigError
    from buildyard.master.changes.pb import PBChangeSource
    from buildyard.plugins import util

    assert isinstance(PBChangeSource(passwd=util.Secret("changepw")).passwd, util.Secret)
    with pytest.raises(ConfigError) as refused:
        PBChangeSource(passwd=["pw"])
    assert "passwd must be a non-empty string or a secret, not list" in str(refused.value)


PG = "c['db'] = {'db_url': 'postgresql://u@127.0.0.1/x'}\n"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        # masters sharing PostgreSQL share their events through it unless told otherwise
        (PG + "c['multiMaster'] = True\n", {"type": "postgres"}),
        (PG + "c['multiMaster'] = True\nc['mq'] = {'type': 'simple'}\n", {"type": "simple"}),
        (PG, {"type": "simple"}),
        ("c['multiMaster'] = True\n", {"type": "simple"}),  # SQLite: one master
        (PG + "c['mq'] = {'type': 'postgres', 'retention': 30}\n", None),
    ],
)
def test_the_queue_type_follows_the_database_and_multimaster(
    lines: str, expected: dict[str, object] | None, write_config: WriteConfig, basedir: Path
) -> None:
    write_config(GOOD + lines)
    config = load_master_config(basedir)
    want = expected or {"type": "postgres", "retention": 30}
    assert dict(config.mq) == want
    assert config.warnings == ()


def test_wamp_is_warned_and_replaced_by_the_postgres_queue(
    write_config: WriteConfig, basedir: Path
) -> None:
    path = write_config(GOOD + PG + "c['mq'] = {'type': 'wamp', 'router_url': 'ws://h/ws'}\n")
    config = load_master_config(basedir)
    assert config.mq["type"] == "postgres"
    (warning,) = config.warnings
    assert warning.startswith(f"{path}:{line_of(path, 'wamp')}: c['mq']['router_url'] has no")
    assert "c['mq'] = {'type': 'postgres'}" in warning
    write_config(GOOD + "c['mq'] = {'type': 'wamp'}\n")  # on SQLite: the in-process queue
    config = load_master_config(basedir)
    assert config.mq["type"] == "simple"
    (warning,) = config.warnings
    assert "c['mq']['type'] 'wamp' has no effect in buildyard (it has no WAMP client" in warning


def test_the_postgres_queue_needs_postgres_and_a_positive_retention(
    write_config: WriteConfig, basedir: Path
) -> None:
    write_config(GOOD + "c['mq'] = {'type': 'postgres', 'retention': 0}\n")
    messages = [e.message for e in _errors(basedir)]
    assert messages == [
        "c['mq'] type 'postgres' shares events through the database: it needs a PostgreSQL "
        "db_url, not 'sqlite'",
        "c['mq']['retention'] must be a positive number of seconds, not 0",
    ]

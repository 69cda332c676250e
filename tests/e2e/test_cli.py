"""The CLI as a user runs it: create-master, checkconfig, start, reconfig, stop (real processes)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, ended_at_exit, wait_for

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pass"), worker.Worker("w2", "pass")]
c['builders'] = [
{builders}
]
c['title'] = "CLI test"
c['www'] = {{'port': 'tcp:{port}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def builder(name: str, worker: str = "w1") -> str:
    factory = "factory=util.BuildFactory()"
    return f"    util.BuilderConfig(name={name!r}, workernames=[{worker!r}], {factory}),"


def write_config(basedir: Path, port: int, *builders: str) -> None:
    (basedir / "master.cfg").write_text(CONFIG.format(port=port, builders="\n".join(builders)))


def configured_builders(basedir: Path) -> list[str]:
    with sqlite3.connect(basedir / "state.sqlite") as db:
        rows = db.execute(
            "SELECT b.name FROM builders b JOIN builder_masters bm ON bm.builderid = b.id "
            "ORDER BY b.name"
        ).fetchall()
    return [r[0] for r in rows]


def get_json(url: str) -> Any:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def read_pid(basedir: Path) -> list[int]:
    try:
        return [int((basedir / "buildyard.pid").read_text())]
    except (OSError, ValueError):
        return []


def test_master_lifecycle_as_a_user_runs_it(tmp_path: Path) -> None:
    basedir = tmp_path / "master"
    created = buildyard("create-master", str(basedir))
    assert created.returncode == 0, created.stderr
    assert (basedir / "master.cfg.sample").exists()
    assert (basedir / "state.sqlite").exists()
    # the sample runs as is
    sample = buildyard("checkconfig", "--config", "master.cfg.sample", str(basedir))
    assert sample.returncode == 0, sample.stderr
    assert "Config file is good!" in sample.stdout

    port = free_port()
    write_config(basedir, port, builder("a"), builder("b"), builder("keep", "w2"))
    checked = buildyard("checkconfig", str(basedir))
    assert checked.returncode == 0, checked.stderr

    with ended_at_exit(lambda: read_pid(basedir)):
        started = buildyard("start", str(basedir))
        assert started.returncode == 0, started.stderr + started.stdout
        assert f"http://127.0.0.1:{port}/" in started.stdout
        pid = read_pid(basedir)[0]
        masters = get_json(f"http://127.0.0.1:{port}/api/v2/masters")
        assert masters["meta"] == {"total": 1}
        (master,) = masters["masters"]
        assert master["active"] is True
        assert master["name"].endswith(f":{basedir.resolve()}")
        assert configured_builders(basedir) == ["a", "b", "keep"]
        # starting twice is refused
        again = buildyard("start", str(basedir))
        assert again.returncode == 1 and "already running" in again.stderr

        # reconfig: "c" added, "b" removed, "a" and "keep" untouched
        write_config(basedir, port, builder("a"), builder("keep", "w2"), builder("c"))
        reconfigured = buildyard("reconfig", str(basedir))
        assert reconfigured.returncode == 0, reconfigured.stderr + reconfigured.stdout
        assert configured_builders(basedir) == ["a", "c", "keep"]
        log = (basedir / "buildyard.log").read_text()
        done = [line for line in log.splitlines() if "reconfig_done" in line][-1]
        assert "builders_added=['c']" in done
        assert "builders_removed=['b']" in done
        assert "builders_unchanged=['a', 'keep']" in done
        assert "builders_updated=[]" in done
        # only "c" was started and only "b" stopped: "a" and "keep" kept running untouched
        touched = re.findall(
            r"service_(added|removed|reconfigured)\s+service=master/botmaster/(\w+)", log
        )
        assert touched == [
            ("added", "a"),
            ("added", "b"),
            ("added", "keep"),
            ("removed", "b"),
            ("added", "c"),
        ], touched
        assert read_pid(basedir) == [pid]

        # a broken config leaves the running one untouched
        (basedir / "master.cfg").write_text(
            (basedir / "master.cfg").read_text() + "c['titel'] = 'typo'\n"
        )
        bad = buildyard("reconfig", str(basedir))
        assert bad.returncode == 1
        assert "titel" in bad.stdout
        assert configured_builders(basedir) == ["a", "c", "keep"]
        assert (
            get_json(f"http://127.0.0.1:{port}/api/v2/masters/{master['masterid']}")["masters"][0][
                "active"
            ]
            is True
        )

        stopped = buildyard("stop", str(basedir))
        assert stopped.returncode == 0, stopped.stderr
        assert wait_for(lambda: not read_pid(basedir), timeout=10)
    with sqlite3.connect(basedir / "state.sqlite") as db:
        assert db.execute("SELECT active FROM masters").fetchall() == [(0,)]
        assert db.execute("SELECT count(*) FROM builder_masters").fetchone() == (0,)
    assert buildyard("stop", str(basedir)).returncode == 0  # stopping a stopped master is fine


def test_checkconfig_reports_every_mistake_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "master.cfg").write_text(
        "from buildyard.plugins import *\n"  # 1
        "c = BuildmasterConfig = {}\n"  # 2
        "c['workers'] = [worker.Worker('w1', 'pass')]\n"  # 3
        "c['titel'] = 'typo'\n"  # 4
        "c['builders'] = [\n"  # 5
        "    util.BuilderConfig(name='a', workernames=['nobody'], factory=util.BuildFactory()),\n"
        "]\n"  # 7
        "c['workers'].append(worker.Worker('w2', 42))\n"  # 8
    )
    result = buildyard("checkconfig", str(tmp_path))
    assert result.returncode == 1
    # errors are the indented lines; warnings ("warning: ...") are not mistakes
    lines = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(lines) == 3, result.stderr
    cfg = str(tmp_path / "master.cfg")
    assert any(line.startswith(f"{cfg}:4:") and "title" in line for line in lines), lines
    assert any(line.startswith(f"{cfg}:6:") and "nobody" in line for line in lines), lines
    assert any(line.startswith(f"{cfg}:8:") and "password" in line for line in lines), lines


def test_start_refuses_a_bad_config_and_a_missing_one(tmp_path: Path) -> None:
    missing = buildyard("start", str(tmp_path))
    assert missing.returncode == 1 and "master.cfg" in missing.stderr
    (tmp_path / "master.cfg").write_text("c = BuildmasterConfig = {'bogus': 1}\n")
    bad = buildyard("start", str(tmp_path))
    assert bad.returncode == 1
    assert "bogus" in bad.stderr
    assert not (tmp_path / "buildyard.pid").exists()


MASTER_COMMANDS = (
    "create-master",
    "upgrade-master",
    "checkconfig",
    "start",
    "stop",
    "restart",
    "reconfig",
)


def test_every_command_has_help() -> None:
    for command in MASTER_COMMANDS:
        result = buildyard(command, "--help")
        assert result.returncode == 0
        assert "basedir" in result.stdout
    assert buildyard("no-such-command").returncode == 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrade_master_creates_the_schema_once(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = (
        "sqlite:///state.sqlite" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    )
    write_config(tmp_path, free_port(), builder("a"))
    cfg = tmp_path / "master.cfg"
    cfg.write_text(cfg.read_text().replace("sqlite:///state.sqlite", url))
    first = buildyard("upgrade-master", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "upgrade complete" in first.stdout
    second = buildyard("upgrade-master", str(tmp_path))
    assert second.returncode == 0, second.stderr
    assert "already up to date" in second.stdout
    checked = buildyard("checkconfig", str(tmp_path))
    assert checked.returncode == 0, checked.stderr


def test_database_problems_are_one_clear_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = buildyard(
        "create-master", "--db", f"postgresql://nobody@127.0.0.1:{port}/x", str(tmp_path)
    )
    assert result.returncode == 1
    assert "cannot connect to the database" in result.stderr
    assert "Traceback" not in result.stderr
    (tmp_path / "master.cfg").write_text("c = BuildmasterConfig = {'db_url': 'mysql://a/b'}\n")
    checked = buildyard("checkconfig", str(tmp_path))
    assert checked.returncode == 1
    assert "master.cfg:1:" in checked.stderr and "'mysql' is not supported" in checked.stderr


def test_checkconfig_takes_the_config_file_as_buildbot_does(tmp_path: Path) -> None:
    write_config(tmp_path, free_port(), builder("a"))
    checked = buildyard("checkconfig", str(tmp_path / "master.cfg"))
    assert checked.returncode == 0, checked.stderr
    assert "Config file is good!" in checked.stdout
    (tmp_path / "other.cfg").write_text("c = BuildmasterConfig = {'bogus': 1}\n")
    other = buildyard("checkconfig", "other.cfg", cwd=tmp_path)
    assert other.returncode == 1
    assert "other.cfg:1:" in other.stderr and "bogus" in other.stderr
    missing = buildyard("checkconfig", str(tmp_path / "nowhere"))
    assert missing.returncode == 1
    assert "nowhere does not exist" in missing.stderr


def test_version_and_help_texts_without_markup() -> None:
    import buildyard as package

    worker_cli = [sys.executable, "-m", "buildyard.worker.cli"]
    version = buildyard("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"buildyard {package.__version__}"
    worker_version = subprocess.run(
        [*worker_cli, "--version"], check=False, capture_output=True, text=True, timeout=60
    )
    assert worker_version.returncode == 0
    assert worker_version.stdout.strip() == f"buildyard-worker {package.__version__}"
    helps = [buildyard(*c, "--help") for c in ([], *([c] for c in MASTER_COMMANDS))]
    helps += [
        subprocess.run(
            [*worker_cli, *c, "--help"], check=False, capture_output=True, text=True, timeout=60
        )
        for c in ([], ["create-worker"], ["start"], ["stop"], ["restart"])
    ]
    for result in helps:
        assert result.returncode == 0, result.stderr
        assert not re.search(r"`|\*\*|::|:\w+:", result.stdout), result.stdout


def test_start_and_checkconfig_print_config_warnings(tmp_path: Path) -> None:
    """A warning of master.cfg's (not an error) is printed by checkconfig and by start, not
    only written to the log a user may never read."""
    port = free_port()
    absolute = (
        "    util.BuilderConfig(name='a', workernames=['w1'], builddir='/srv/a', "
        "factory=util.BuildFactory()),"
    )
    write_config(tmp_path, port, absolute)
    with (tmp_path / "master.cfg").open("a") as cfg:
        cfg.write("c['db'] = {'db_url': 'sqlite://'}\n")  # a throwaway database: no upgrade
    expected = "the absolute builddir '/srv/a' is probably meant as workerbuilddir"
    checked = buildyard("checkconfig", str(tmp_path))
    assert checked.returncode == 0, checked.stderr
    assert "warning:" in checked.stderr and expected in checked.stderr
    with ended_at_exit(lambda: read_pid(tmp_path)):
        started = buildyard("start", str(tmp_path))
        assert started.returncode == 0, started.stderr + started.stdout
        assert "warning:" in started.stderr
        assert expected in started.stderr
        stopped = buildyard("stop", str(tmp_path))
        assert stopped.returncode == 0, stopped.stderr


def test_start_and_upgrade_master_work_in_the_basedir_as_buildbot_does(tmp_path: Path) -> None:
    # a master.cfg that reads its own file by a relative path, run from another directory
    basedir = tmp_path / "master"
    basedir.mkdir()
    port = free_port()
    write_config(basedir, port, builder("a"))
    cfg = basedir / "master.cfg"
    cfg.write_text(cfg.read_text() + "c['title'] = open('title.txt').read().strip()\n")
    (basedir / "title.txt").write_text("from a file\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    upgraded = buildyard("upgrade-master", str(basedir), cwd=elsewhere)
    assert upgraded.returncode == 0, upgraded.stderr
    with ended_at_exit(lambda: read_pid(basedir)):
        started = buildyard("start", str(basedir), cwd=elsewhere)
        assert started.returncode == 0, started.stderr + started.stdout
        try:
            config = get_json(f"http://127.0.0.1:{port}/config")
            assert config["title"] == "from a file"
        finally:
            stopped = buildyard("stop", str(basedir), cwd=elsewhere)
            assert stopped.returncode == 0, stopped.stderr


def test_copy_db_help_names_both_forms_of_its_first_argument() -> None:
    """'copy-db SOURCE_URL DEST_URL' puts the source first: the first argument's help must not
    call it only the destination."""
    from buildyard.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    copy_db = sub.choices["copy-db"]  # type: ignore[index]
    first = next(a for a in copy_db._actions if a.dest == "destination_url")
    assert first.help is not None
    assert "copy to" in first.help and "SOURCE_URL to copy from" in first.help


def test_upgrade_master_help_names_the_buildbot_releases_it_adopts() -> None:
    """upgrade-master adopts Buildbot 3.4 to 4.3 (adopt.BUILDBOT_RELEASES), not 4.3 only."""
    from buildyard.cli.main import build_parser
    from buildyard.master.db.adopt import BUILDBOT_RELEASES

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = sub.choices["upgrade-master"].description  # type: ignore[index]
    oldest, newest = (
        BUILDBOT_RELEASES[min(BUILDBOT_RELEASES)],
        BUILDBOT_RELEASES[max(BUILDBOT_RELEASES)],
    )
    assert f"Buildbot {oldest} to {newest}" in text

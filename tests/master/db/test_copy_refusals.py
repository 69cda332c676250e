"""``buildyard copy-db`` refuses a destination that is the master's own database however its
URL spells it (``--overwrite`` would empty the source), and never prints a URL's password."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from buildyard.cli.main import build_parser
from buildyard.master.db.copy import same_database
from buildyard.master.db.engine import normalize_url


def _url(text: str, basedir: Path) -> sa.URL:
    return normalize_url(text, basedir=basedir)


def test_the_same_sqlite_file_under_other_names(tmp_path: Path) -> None:
    (tmp_path / "state.sqlite").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "state.sqlite", tmp_path / "link.sqlite")
    os.link(tmp_path / "state.sqlite", tmp_path / "hard.sqlite")
    (tmp_path / "other.sqlite").write_bytes(b"")
    source = _url("sqlite:///state.sqlite", tmp_path)
    for same in (
        "sqlite:///./state.sqlite",
        "sqlite:///sub/../state.sqlite",
        "sqlite:///link.sqlite",
        "sqlite:///hard.sqlite",
        f"sqlite:///{tmp_path}/state.sqlite",
    ):
        assert same_database(source, _url(same, tmp_path)), same
    for other in ("sqlite:///other.sqlite", "sqlite:///new.sqlite"):
        assert not same_database(source, _url(other, tmp_path)), other


def test_the_same_postgresql_database_under_other_host_names(tmp_path: Path) -> None:
    source = _url("postgresql://bb:pw@localhost/bb", tmp_path)
    for same in (
        "postgresql://bb:pw@127.0.0.1:5432/bb",
        "postgresql://other@LOCALHOST/bb",
        "postgresql:///bb",  # the local socket
        "postgresql:///bb?host=/var/run/postgresql",
    ):
        assert same_database(source, _url(same, tmp_path)), same
    for other in (
        "postgresql://bb@localhost:5433/bb",
        "postgresql://bb@localhost/bb2",
        "sqlite:///bb",
    ):
        assert not same_database(source, _url(other, tmp_path)), other


def _copy(argv: list[str]) -> int:
    # in this process, without main()'s logging set-up (see tests/e2e/test_copy_db.py)
    args = build_parser().parse_args(["copy-db", *argv])
    return int(args.func(args))


@pytest.fixture
def master_dir(tmp_path: Path) -> Path:
    basedir = tmp_path / "master"
    basedir.mkdir()
    (basedir / "master.cfg").write_text(
        "from buildyard.plugins import *\n"
        "c = BuildmasterConfig = {}\n"
        "c['db'] = {'db_url': 'sqlite:///state.sqlite'}\n"
        "c['workers'] = [worker.Worker('w1', 'pw')]\n"
        "c['protocols'] = {'pb': {'port': 'tcp:0:interface=127.0.0.1'}}\n"
        "f = util.BuildFactory([steps.ShellCommand(command='true')])\n"
        "c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f)]\n"
    )
    with sqlite3.connect(basedir / "state.sqlite") as db:
        db.execute("CREATE TABLE kept (x INTEGER)")
        db.execute("INSERT INTO kept VALUES (1)")
    db.close()
    return basedir


def test_copy_db_refuses_the_masters_own_database_through_a_symlink(
    master_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.symlink(master_dir / "state.sqlite", tmp_path / "alias.sqlite")
    for url in (f"sqlite:///{tmp_path / 'alias.sqlite'}", "sqlite:///./state.sqlite"):
        assert _copy(["--overwrite", url, str(master_dir)]) == 1
        assert "is the master's own database" in capsys.readouterr().err
    with sqlite3.connect(master_dir / "state.sqlite") as db:
        assert db.execute("SELECT x FROM kept").fetchall() == [(1,)]
    db.close()


def test_copy_db_never_prints_the_destinations_password(
    master_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _copy(["postgresql://bb:hunter2@127.0.0.1:1/", str(master_dir)]) == 1
    err = capsys.readouterr().err
    assert "names no database" in err
    assert "hunter2" not in err
    assert "bb:***@127.0.0.1" in err

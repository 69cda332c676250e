"""``buildyard copy-db`` from Buildbot's MySQL: a stock Buildbot 4.3.0 master on a real MariaDB
server (PyMySQL, ``mysql+pymysql://``) builds a change from its base change hook and a forced
build with a stock worker, and stops. ``buildyard copy-db MYSQL_URL DEST_URL`` (the URL as
``mysql://``, with no driver, as Buildbot's users write it) copies its database to SQLite and to
PostgreSQL: every row of every table is the MySQL row, and a buildyard master started on the
SQLite copy serves the old builds, steps, log lines and changes as Buildbot served them. The
MySQL database is read only: its rows (and checksums) are the same after the copies.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from buildyard.cli.main import build_parser
from buildyard.common.clock import SystemClock
from buildyard.master.db import copy
from buildyard.master.db.connector import Database
from buildyard.master.db.migrate import MIGRATIONS_DIR
from buildyard.master.db.schema import metadata
from buildyard.testing.mysql import MysqlServer
from buildyard.testing.postgres import PostgresServer, free_port
from buildyard.testing.processes import buildyard, end_popen, spawn_master, wait_for
from buildyard.testing.stock import buildbot_venv
from buildyard.testing.workers import STOCK_PB, start_worker

# one worker runs the module: its stock Buildbot history and MariaDB server are made once
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600), pytest.mark.xdist_group("mysql")]

STOCK_CFG = """\
from buildbot.plugins import *

c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {{'pb': {{'port': 'tcp:{pb}:interface=127.0.0.1'}}}}
factory = util.BuildFactory([
    steps.ShellCommand(name='hello', command=['sh', '-c',
                       'echo out one; echo err one >&2; seq 1 1500; printf "no newline"']),
    steps.SetPropertyFromCommand(name='prop', command=['echo', 'value'], property='got'),
])
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=factory)]
c['schedulers'] = [
    schedulers.SingleBranchScheduler(name='on-change',
                                     change_filter=util.ChangeFilter(branch='main'),
                                     treeStableTimer=None, builderNames=['b']),
    schedulers.ForceScheduler(name='force', builderNames=['b']),
]
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1', 'change_hook_dialects': {{'base': True}}}}
c['buildbotURL'] = 'http://127.0.0.1:{www}/'
c['db'] = {{'db_url': {db_url!r}}}
c['buildbotNetUsageData'] = None
"""

OURS_CFG = """\
from buildbot.plugins import *

c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {{'pb': {{'port': 'tcp:{pb}:interface=127.0.0.1'}}}}
factory = util.BuildFactory([steps.ShellCommand(name='hello', command=['true'])])
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=factory)]
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
c['db'] = {{'db_url': {db_url!r}}}
"""

TIMEOUT = 180.0


def _get(base: str, path: str) -> Any:
    with urllib.request.urlopen(f"{base}/{path}", timeout=60) as answer:
        return json.loads(answer.read())


def _items(base: str, path: str) -> list[dict[str, Any]]:
    answer = _get(base, path)
    (key,) = (k for k in answer if k != "meta")
    items: list[dict[str, Any]] = answer[key]
    return items


def _post(url: str, data: bytes, content_type: str) -> Any:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return answer.read()


def capture(base: str) -> dict[str, Any]:
    """The history as a REST client sees it: changes, builds with properties, steps, each log's
    lines and raw text."""
    seen: dict[str, Any] = {
        "changes": _items(base, "changes"),
        "sourcestamps": _items(base, "sourcestamps"),
        "buildsets": _items(base, "buildsets"),
        "buildrequests": _items(base, "buildrequests"),
        "builds": _items(base, "builds?property=*"),
        "steps": [],
        "contents": {},
        "raw": {},
    }
    for build in seen["builds"]:
        for step in _items(base, f"builds/{build['buildid']}/steps"):
            seen["steps"].append(step)
            for log in _items(base, f"steps/{step['stepid']}/logs"):
                logid = str(log["logid"])
                seen["contents"][logid] = _items(base, f"logs/{logid}/contents")
                with urllib.request.urlopen(f"{base}/logs/{logid}/raw", timeout=60) as answer:
                    seen["raw"][logid] = answer.read().decode()
    return seen


@dataclass
class OnMysql:
    root: Path
    db_url: str  # mysql://, as a Buildbot user writes it (no driver)
    before: dict[str, Any]  # Buildbot's REST answers


def _wait(predicate: Callable[[], bool], what: str, logs: list[Path]) -> None:
    if not wait_for(predicate, timeout=TIMEOUT, interval=0.2):
        tails = "\n".join(
            f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists()
        )
        raise AssertionError(f"timed out waiting for {what}\n{tails}")


@pytest.fixture(scope="module")
def on_mysql(mysql_server: MysqlServer, tmp_path_factory: pytest.TempPathFactory) -> OnMysql:
    root = tmp_path_factory.mktemp("bb-mysql")
    db_url = mysql_server.create_database("bb")
    stock_url = db_url.replace("mysql://", "mysql+pymysql://", 1)
    basedir = root / "master"
    bb = str(buildbot_venv() / "bin" / "buildbot")
    subprocess.run(
        [bb, "create-master", "-q", f"--db={stock_url}", str(basedir)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    pb, www = free_port(), free_port()
    (basedir / "master.cfg").write_text(STOCK_CFG.format(pb=pb, www=www, db_url=stock_url))
    base = f"http://127.0.0.1:{www}/api/v2"
    twistd = basedir / "twistd.log"
    logs = [twistd, root / "worker.log"]
    with (basedir / "buildbot.out").open("ab") as out:
        proc = subprocess.Popen(
            [bb, "start", "--nodaemon", str(basedir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    worker = None
    try:
        _wait(
            lambda: twistd.exists() and "BuildMaster is running" in twistd.read_text(),
            "Buildbot to start",
            logs,
        )
        worker = start_worker(STOCK_PB, root / "worker", pb, "w1", "pw")
        _wait(lambda: bool(_items(base, "workers/w1")[0]["connected_to"]), "the worker", logs)
        change = {
            "author": "Jane <jane@example.org>",
            "comments": "a change through the hook",
            "revision": "abc123",
            "branch": "main",
            "repository": "https://example.org/r.git",
            "project": "p",
            "files": json.dumps(["a.c", "dir/b.c"]),
            "properties": json.dumps({"ticket": 7}),
        }
        _post(
            f"http://127.0.0.1:{www}/change_hook/base",
            urllib.parse.urlencode(change).encode(),
            "application/x-www-form-urlencoded",
        )
        _wait(
            lambda: any(b["complete"] for b in _items(base, "builds")), "the change's build", logs
        )
        builderid = _items(base, "builders")[0]["builderid"]
        force = {
            "jsonrpc": "2.0",
            "method": "force",
            "id": 1,
            "params": {"builderid": str(builderid), "reason": "forced"},
        }
        _post(f"{base}/forceschedulers/force", json.dumps(force).encode(), "application/json")
        _wait(
            lambda: (
                sum(b["complete"] for b in _items(base, "builds")) == 2
                and all(s["complete"] for s in _items(base, "buildsets"))
            ),
            "the forced build and both buildsets",
            logs,
        )
        before = capture(base)
    finally:
        end_popen(proc, timeout=60)
        if worker is not None:
            end_popen(worker)
    (root / "before.json").write_text(json.dumps(before, indent=1))
    return OnMysql(root, db_url, before)


def _ordered(conn: sa.Connection) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in metadata.sorted_tables:
        found = conn.execute(sa.select(*table.columns)).all()
        out[table.name] = sorted((tuple(r) for r in found), key=repr)
    return out


def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of buildyard's schema, in a fixed order; the MySQL side read
    through PyMySQL (not copy-db's aiomysql), the others through buildyard's store."""
    if url.startswith("mysql://"):
        parsed = sa.engine.make_url(url).set(drivername="mysql+pymysql")
        engine = sa.create_engine(parsed.update_query_dict({"charset": "utf8mb4"}))
        try:
            with engine.connect() as conn:
                return _ordered(conn)
        finally:
            engine.dispose()

    async def read() -> dict[str, list[tuple[Any, ...]]]:
        db = Database(url, clock=SystemClock())
        try:
            async with db.reading() as conn:
                return await conn.run_sync(_ordered)
        finally:
            await db.close()

    return asyncio.run(read())


def _renamed_by_0002() -> dict[str, str]:
    """The object class names that buildyard's revision 0002 renames (see its docstring)."""
    path = MIGRATIONS_DIR / "versions" / "0002_scheduler_state_names.py"
    spec = importlib.util.spec_from_file_location("_rev_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    moves: dict[str, str] = module._MOVES
    return moves


def assert_copied(
    copied: dict[str, list[tuple[Any, ...]]], source: dict[str, list[tuple[Any, ...]]]
) -> None:
    """Every row of every table is the source's. The one change is that of ``upgrade-master``
    adopting a Buildbot database: the copy is brought from Buildbot 4.3's tables to buildyard's
    head, whose revision 0002 gives Buildbot's scheduler service objects (which hold no state)
    the bare class name buildyard keeps schedulers' state under."""
    assert copied.keys() == source.keys()
    moves = _renamed_by_0002()
    for name, theirs in source.items():
        expected = theirs
        if name == "objects":
            expected = sorted(((i, n, moves.get(c, c)) for i, n, c in theirs), key=repr)
        assert copied[name] == expected, name


def assert_same_rows(
    now: dict[str, list[tuple[Any, ...]]], before: dict[str, list[tuple[Any, ...]]]
) -> None:
    assert now.keys() == before.keys()
    for name, theirs in before.items():
        assert now[name] == theirs, name


@pytest.fixture(scope="module")
def source_rows(on_mysql: OnMysql) -> dict[str, list[tuple[Any, ...]]]:
    return rows(on_mysql.db_url)


def _checksums(server: MysqlServer, db_url: str) -> str:
    name = db_url.rsplit("/", 1)[1]
    tables = ", ".join(f"{name}.{t.name}" for t in metadata.sorted_tables)
    return server.sql(f"CHECKSUM TABLE {tables} EXTENDED")


def test_copy_db_from_mysql_to_sqlite_and_postgresql_keeps_every_row(
    on_mysql: OnMysql,
    source_rows: dict[str, list[tuple[Any, ...]]],
    *,
    mysql_server: MysqlServer,
    postgres_server: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # a real history: two builds with steps, logs over several chunks, properties, a change
    # with files and properties, buildsets, requests and claims, users, state
    for name in ("builds", "steps", "logs", "logchunks", "build_properties", "changes",
                 "change_files", "change_properties", "buildsets", "buildrequests",
                 "buildrequest_claims", "sourcestamps", "workers", "schedulers", "masters",
                 "objects", "object_state"):  # fmt: skip
        assert source_rows[name], name
    assert len(source_rows["builds"]) == 2
    checksums = _checksums(mysql_server, on_mysql.db_url)

    copy_sqlite = tmp_path / "copy.sqlite"
    done = buildyard("copy-db", on_mysql.db_url, f"sqlite:///{copy_sqlite}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "copying logchunks:" in done.stdout and "Copy complete" in done.stdout
    assert_copied(rows(f"sqlite:///{copy_sqlite}"), source_rows)

    # the two-URL form from any source: the SQLite copy copied again, paths relative to the
    # working directory; the same file under another spelling is refused
    done = buildyard("copy-db", "sqlite:///copy.sqlite", "sqlite:///again.sqlite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert rows(f"sqlite:///{tmp_path / 'again.sqlite'}") == rows(f"sqlite:///{copy_sqlite}")
    done = buildyard("copy-db", "sqlite:///copy.sqlite", f"sqlite:///{copy_sqlite}", cwd=tmp_path)
    assert done.returncode == 1
    assert "is the source database" in done.stderr

    # in this process with small batches, so each table of more than a few rows is streamed
    # from MySQL in several (and the deferred links read back in several)
    monkeypatch.setattr(copy, "BATCH_ROWS", 3)
    pg_url = postgres_server.create_database("frommysql")
    args = build_parser().parse_args(["copy-db", "-q", on_mysql.db_url, pg_url])
    assert args.func(args) == 0
    # (-q: none of copy-db's lines; the log lines here are the test process's, main() would
    # send them to the log)
    out = capsys.readouterr().out
    assert "Copying" not in out and "copying" not in out and "Copy complete" not in out
    assert len(source_rows["logchunks"]) > 3 and len(source_rows["steps"]) > 3
    assert_copied(rows(pg_url), source_rows)

    # read only: the site's MySQL database is as it was
    assert_same_rows(rows(on_mysql.db_url), source_rows)
    assert _checksums(mysql_server, on_mysql.db_url) == checksums

    # a second copy into the now filled (and upgraded) destination is refused
    again = buildyard("copy-db", "--overwrite", on_mysql.db_url, pg_url, cwd=tmp_path)
    assert again.returncode == 1
    assert "copy into an empty database" in again.stderr
    assert_copied(rows(pg_url), source_rows)


def test_a_master_on_the_copy_serves_the_history_as_buildbot_did(
    on_mysql: OnMysql, tmp_path: Path
) -> None:
    basedir = tmp_path / "ours"
    basedir.mkdir()
    copy_url = f"sqlite:///{basedir / 'state.sqlite'}"
    done = buildyard("copy-db", on_mysql.db_url, copy_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    www = free_port()
    (basedir / "master.cfg").write_text(OURS_CFG.format(pb=free_port(), www=www, db_url=copy_url))
    proc = spawn_master(basedir)
    try:
        base = f"http://127.0.0.1:{www}/api/v2"

        def serving() -> bool:
            try:
                return bool(_items(base, "masters"))
            except OSError:
                return False

        assert wait_for(serving, timeout=120), (basedir / "out.log").read_text()[-3000:]
        after = capture(base)
    finally:
        assert end_popen(proc) == 0
    (tmp_path / "after.json").write_text(json.dumps(after, indent=1))
    before = on_mysql.before
    assert [c["revision"] for c in before["changes"]] == ["abc123"]
    assert len(before["builds"]) == 2 and len(before["steps"]) == 6
    assert before["builds"][0]["properties"]["got"] == ["value", "SetPropertyFromCommand Step"]
    assert any(text.endswith("no newline\n") for text in before["raw"].values())
    for collection in ("changes", "sourcestamps", "buildsets", "buildrequests", "builds", "steps"):
        assert after[collection] == before[collection], collection
    assert after["contents"] == before["contents"]
    assert after["raw"] == before["raw"]


def test_copy_db_from_mysql_refuses_what_it_cannot_copy(
    mysql_server: MysqlServer, tmp_path: Path
) -> None:
    # an empty MySQL database is no Buildbot database
    empty = mysql_server.create_database("empty")
    done = buildyard("copy-db", empty, f"sqlite:///{tmp_path / 'x.sqlite'}", cwd=tmp_path)
    assert done.returncode == 1
    assert "is not a Buildbot database" in done.stderr
    # an older Buildbot's database: upgrade it with Buildbot 4.3.0 first (copy-db never
    # changes the MySQL database, so it does not add what 4.3 added)
    older = mysql_server.create_database("older")
    name = older.rsplit("/", 1)[1]
    mysql_server.sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)", name)
    mysql_server.sql("INSERT INTO alembic_version VALUES ('066')", name)
    done = buildyard("copy-db", older, f"sqlite:///{tmp_path / 'o.sqlite'}", cwd=tmp_path)
    assert done.returncode == 1
    assert "Buildbot 4.0 (schema revision '066')" in done.stderr
    assert "'buildbot upgrade-master' first" in done.stderr
    # 4.3's revision, but tables that are not Buildbot's: named
    mysql_server.sql("UPDATE alembic_version SET version_num = '067'", name)
    mysql_server.sql("CREATE TABLE masters (id INT PRIMARY KEY, name TEXT, extra INT)", name)
    done = buildyard("copy-db", older, f"sqlite:///{tmp_path / 'o.sqlite'}", cwd=tmp_path)
    assert done.returncode == 1
    assert "masters.name_hash is missing" in done.stderr
    assert "masters.extra is not Buildbot's" in done.stderr
    assert re.search(r"missing tables: [a-z_, ]*\bbuilds\b", done.stderr), done.stderr
    assert not (tmp_path / "o.sqlite").exists()
    # nothing answers there: the error names the database, password hidden
    port = free_port()
    done = buildyard(
        "copy-db", f"mysql://u:secret@127.0.0.1:{port}/bb", f"sqlite:///{tmp_path / 'y.sqlite'}"
    )
    assert done.returncode == 1
    assert "cannot read the MySQL database" in done.stderr and "secret" not in done.stderr
    # MySQL is a source only
    done = buildyard("copy-db", f"sqlite:///{tmp_path / 'z.sqlite'}", empty)
    assert done.returncode == 1
    assert "backend 'mysql' is not supported" in done.stderr

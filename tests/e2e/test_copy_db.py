"""``buildyard copy-db``: a database filled by real builds is copied SQLite -> PostgreSQL ->
SQLite with every row of every table kept; a master started on the copy answers the REST API
as the original did, and numbers its new rows past the copied ones; the refusals say why."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from buildyard.cli.main import build_parser
from buildyard.common.clock import SystemClock
from buildyard.master.db import copy
from buildyard.master.db.connector import Database
from buildyard.master.db.schema import metadata
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, end_popen, eventually, spawn_master

pytestmark = pytest.mark.e2e

BODY = """\
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
f = util.BuildFactory([
    steps.ShellCommand(
        name="count",
        command=util.Interpolate("seq 1 300; echo oops >&2; exit %(prop:code:-0)s"),
    ),
    steps.SetPropertyFromCommand(name="who", command="echo me", property="who"),
])
c['builders'] = [
    util.BuilderConfig(name="b", workernames=["w1"], factory=f, tags=["copied"]),
]
c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
"""

# answers that depend only on stored rows (not on which master or worker is connected now)
ENDPOINTS = [
    "builds",
    "builds/1/steps",
    "builds/2/steps",
    "builds/1/properties",
    "buildsets",
    "buildrequests",
    "changes",
    "sourcestamps",
    "logs/1/contents",
    "logs/1/raw",
]


def _get(www: int, path: str) -> Any:
    url = f"http://127.0.0.1:{www}/api/v2/{path}"
    with urllib.request.urlopen(url, timeout=30) as answer:
        body = answer.read()
    return body.decode() if path.endswith("/raw") else json.loads(body)


async def _rows(url: str, basedir: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a fixed order."""
    db = Database(url, clock=SystemClock(), basedir=basedir)
    try:
        out = {}
        async with db.reading() as conn:
            for table in metadata.sorted_tables:
                cols = list(table.columns)
                rows = (await conn.execute(sa.select(*cols).order_by(*cols))).all()
                out[table.name] = [tuple(r) for r in rows]
        return out
    finally:
        await db.close()


def _run_copy(argv: list[str]) -> int:
    # the command in this process (so BATCH_ROWS can be made small), without main()'s logging
    # set-up, which would bind the log to this test's captured stderr for the tests after it
    args = build_parser().parse_args(["copy-db", *argv])
    return int(args.func(args))


async def _copy(*argv: str) -> int:
    return await asyncio.to_thread(_run_copy, list(argv))


def _config(basedir: Path, db_url: str, www: int) -> None:
    basedir.mkdir()
    (basedir / "master.cfg").write_text(
        "from buildyard.plugins import *\n"
        "c = BuildmasterConfig = {}\n"
        f"c['db'] = {{'db_url': {db_url!r}}}\n"
        f"c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}\n"
        "c['workers'] = [worker.Worker('w1', 'pw')]\n"
        "f = util.BuildFactory([steps.ShellCommand(command='true')])\n"
        "c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f, "
        "tags=['copied'])]\n"
    )


async def test_copy_db_sqlite_to_postgresql_and_back_keeps_every_row(
    tmp_path: Path,
    postgres_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    www = free_port()
    async with running_master(tmp_path, BODY.format(www=www)) as run:
        ok = await run.build("b")
        failed = await run.build("b", properties={"code": 2})
        assert (ok.build.results, failed.build.results) == (0, 2)
        await run.master.data.updates.add_change(
            author="Jane <jane@example.org>",
            files=["a.c", "b.c"],
            comments="a change",
            revision="abc123",
            branch="main",
            properties={"ticket": (7, "Change")},
            repository="https://example.org/r.git",
        )
        # (from a thread: the master answers on this event loop)
        before = {path: await asyncio.to_thread(_get, www, path) for path in ENDPOINTS}
    source_dir = run.basedir
    original = await _rows("sqlite:///state.sqlite", source_dir)
    filled = sorted(name for name, rows in original.items() if rows)
    # builds, steps, logs and their chunks, properties, changes, users, ...: a real history
    for name in ("builds", "steps", "logs", "logchunks", "build_properties", "changes",
                 "change_files", "change_properties", "buildsets", "buildrequests",
                 "buildrequest_claims", "sourcestamps", "workers",
                 "schedulers", "masters", "objects", "object_state"):  # fmt: skip
        assert name in filled, name

    # small batches, so every table of more than a few rows is read and written in several
    monkeypatch.setattr(copy, "BATCH_ROWS", 3)
    pg_url = postgres_server.create_database()
    assert await _copy(pg_url, str(source_dir)) == 0
    out = capsys.readouterr().out
    assert "copying logchunks:" in out and out.rstrip().endswith("Copy complete")
    assert await _rows(pg_url, tmp_path) == original

    # refusals: the destination now has rows; URLs that are not ours or not URLs at all
    assert await _copy(pg_url, str(source_dir)) == 1
    err = capsys.readouterr().err
    assert "the destination is not empty" in err and "--overwrite" in err
    assert await _copy("mysql://u@localhost/bb", str(source_dir)) == 1
    assert "backend 'mysql' is not supported" in capsys.readouterr().err
    assert await _copy("no-such-thing", str(source_dir)) == 1
    assert "is not a database URL" in capsys.readouterr().err
    assert await _copy("sqlite:///state.sqlite", str(source_dir)) == 1
    assert "is the master's own database" in capsys.readouterr().err

    # a master on the PostgreSQL copy answers as the original did; its own row (a new
    # masters id) shows the sequences were moved past the copied ids
    pg_dir = tmp_path / "on-postgres"
    www2 = free_port()
    _config(pg_dir, pg_url, www2)
    proc = spawn_master(pg_dir)
    try:

        async def serving() -> bool:
            try:
                return bool(await asyncio.to_thread(_get, www2, "masters"))
            except OSError:
                return False

        await eventually(serving, within=60)
        after = {path: _get(www2, path) for path in ENDPOINTS}
        assert after == before
        masters = _get(www2, "masters")["masters"]
        assert max(m["masterid"] for m in masters) == len(original["masters"]) + 1

        # while that master runs, its database is not copied
        refused = buildyard("copy-db", f"sqlite:///{tmp_path / 'x.sqlite'}", str(pg_dir))
        assert refused.returncode == 1
        assert "is running" in refused.stderr and "stop it" in refused.stderr
    finally:
        assert end_popen(proc) == 0
    from_pg = await _rows(pg_url, tmp_path)

    # and back to SQLite, as a user runs it (a subprocess, the default batch size)
    back = tmp_path / "back.sqlite"
    done = buildyard("copy-db", f"sqlite:///{back}", str(pg_dir))
    assert done.returncode == 0, done.stderr
    assert await _rows(f"sqlite:///{back}", tmp_path) == from_pg

    # --overwrite replaces what the destination held
    assert await _copy("--overwrite", f"sqlite:///{back}", str(source_dir)) == 0
    assert "deleting the destination's rows" in capsys.readouterr().out
    assert await _rows(f"sqlite:///{back}", tmp_path) == original


def test_copy_db_refuses_a_directory_without_a_master(tmp_path: Path) -> None:
    done = buildyard("copy-db", f"sqlite:///{tmp_path / 'd.sqlite'}", str(tmp_path / "nowhere"))
    assert done.returncode == 1
    assert "is not a master directory" in done.stderr


def test_copy_db_needs_a_destination() -> None:
    done = buildyard("copy-db")
    assert done.returncode == 2
    assert "destination_url" in done.stderr

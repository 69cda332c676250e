"""The whole pipeline as a new user meets it: the config create-master writes, pointed at a
local git repository; a commit is polled, scheduled, built (Git, then the tests) and stored."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from buildyard.common.clock import SystemClock
from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database
from buildyard.master.model.results import Results
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, end_popen, eventually, spawn_master
from buildyard.testing.workers import start_worker

pytestmark = pytest.mark.e2e


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, timeout=60
    )
    return done.stdout.strip()


def sample_project(repo: Path) -> None:
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Ada")
    git(repo, "config", "user.email", "ada@example.org")
    (repo / "hello.py").write_text("def greet():\n    return 'hello'\n")
    (repo / "test_hello.py").write_text(
        "import unittest\nimport hello\n\n\n"
        "class T(unittest.TestCase):\n"
        "    def test_greet(self):\n"
        "        self.assertEqual(hello.greet(), 'hello')\n"
    )
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")


# the worker kind alternates with the backend, so both workers meet the pipeline
@pytest.mark.parametrize(("db_url", "kind"), [("sqlite", "buildyard")], indirect=["db_url"])
async def test_a_commit_is_polled_scheduled_built_and_stored(
    tmp_path: Path, db_url: str, kind: str
) -> None:
    await _pipeline(tmp_path, db_url, kind)


@pytest.mark.postgres
@pytest.mark.parametrize(("db_url", "kind"), [("postgresql", "stock")], indirect=["db_url"])
async def test_the_same_on_postgresql_with_the_stock_worker(
    tmp_path: Path, db_url: str, kind: str
) -> None:
    await _pipeline(tmp_path, db_url, kind)


async def _pipeline(tmp_path: Path, db_url: str, kind: str) -> None:
    repo = tmp_path / "project"
    sample_project(repo)
    basedir = tmp_path / "master"
    created = buildyard("create-master", "-q", "--db", db_url, str(basedir))
    assert created.returncode == 0, created.stderr
    port, www = free_port(), free_port()
    cfg = (basedir / "master.cfg.sample").read_text()
    for old, new in [
        ('"https://github.com/buildbot/hello-world.git"', repr(str(repo))),
        ("pollInterval=300", "pollInterval=1"),
        ("{'port': 9989}", f"{{'port': 'tcp:{port}:interface=127.0.0.1'}}"),
        ("{'port': 8010}", f"{{'port': 'tcp:{www}:interface=127.0.0.1'}}"),
    ]:
        assert old in cfg, old
        cfg = cfg.replace(old, new)
    (basedir / "master.cfg").write_text(cfg)
    db = Database(db_url, clock=SystemClock(), basedir=basedir)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(spawn_master(basedir))
        procs.append(
            await asyncio.to_thread(
                start_worker, kind, tmp_path / "worker", port, "example-worker", "pass"
            )
        )

        # the poller's first look records the branch head without building it
        async def polled() -> bool:
            async with db.reading() as conn:
                rows = await conn.execute(sa.select(t.object_state.c.value_json))
                return any("main" in r for r in rows.scalars())

        await eventually(polled, within=60)
        (repo / "hello.py").write_text("def greet():\n    return 'hello'\n\n\nX = 1\n")
        git(repo, "commit", "-q", "-am", "second: add X")
        revision = git(repo, "rev-parse", "HEAD")

        async def built() -> bool:
            builds = await db.builds.get_builds()
            return any(b.complete_at is not None for b in builds)

        await eventually(built, within=120)
        [change] = await db.changes.get_changes()
        assert change.revision == revision
        assert change.author == "Ada <ada@example.org>"
        assert change.comments == "second: add X"
        assert change.files == ("hello.py",)
        assert change.branch == "main"
        [build] = await db.builds.get_builds()
        assert build.results == Results.SUCCESS
        props = await db.builds.get_build_properties(build.id)
        assert props["got_revision"] == (revision, "Git")
        assert props["scheduler"][0] == "all"
        steps = await db.steps.get_steps(build.id)
        assert [(s.name, s.results) for s in steps] == [
            ("git", Results.SUCCESS),
            ("test", Results.SUCCESS),
        ]
        [stdio] = await db.logs.get_logs(steps[1].id)
        text = await db.logs.get_log_lines(stdio.id, 0, stdio.num_lines - 1)
        assert "etest_greet (test_hello.T.test_greet) ... ok" in text.splitlines()
        assert "eOK" in text.splitlines()
    finally:
        for proc in reversed(procs):
            end_popen(proc)
        await db.close()

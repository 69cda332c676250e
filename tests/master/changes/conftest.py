"""Change sources over a real database (both backends), the in-process MQ, and real git
repositories in temporary directories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from buildyard.master.changes.base import ChangeSourceContext
from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.mq.local import LocalMQ
from buildyard.testing.clock import FakeClock

# git as the tests drive it: no user or system configuration
GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}

AUTHOR = "Ann Author <ann@example.org>"
COMMITTER = "Cy Committer <cy@example.org>"


class Upstream:
    """The repository a poller watches: a plain (non-bare) git repository that the test commits
    to directly, with deterministic commit times one minute apart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.time = 1_600_000_000
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.name", "Cy Committer")
        self.git("config", "user.email", "cy@example.org")

    @property
    def url(self) -> str:
        return str(self.path)

    def git(self, *args: str, **env: str) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**GIT_ENV, **env},
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    def commit(
        self,
        message: str,
        files: dict[str, str] | None = None,
        *,
        author: str = AUTHOR,
    ) -> str:
        """Commit ``files`` (name: content; a default file when None); the new revision."""
        self.time += 60
        for name, content in (files or {f"file-{self.time}.txt": message}).items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        self.git("add", "-A")
        stamp = f"@{self.time} +0000"
        self.git(
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            message,
            f"--author={author}",
            GIT_AUTHOR_DATE=stamp,
            GIT_COMMITTER_DATE=stamp,
        )
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", ref)

    def checkout(self, branch: str, *, new: bool = False) -> None:
        self.git("checkout", "-q", *(["-b"] if new else []), branch)


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path / "upstream")


@pytest.fixture
def mq() -> LocalMQ:
    return LocalMQ()


@pytest.fixture
def updates(database: Database, mq: LocalMQ, clock: FakeClock) -> Updates:
    return Updates(db=database, mq=mq, clock=clock)


@pytest.fixture
async def masterid(updates: Updates) -> int:
    return await updates.find_master_id("test-master")


@pytest.fixture
def basedir(tmp_path: Path) -> Path:
    path = tmp_path / "master"
    path.mkdir()
    return path


@pytest.fixture
def ctx(updates: Updates, clock: FakeClock, basedir: Path, masterid: int) -> ChangeSourceContext:
    return ChangeSourceContext(
        updates=updates, clock=clock, masterid=lambda: masterid, basedir=basedir
    )

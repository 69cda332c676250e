"""The database connector: one engine and a repository per table family.

``Database`` is what ``master.db`` is. It owns the engine's lifetime; its repositories share it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.common.clock import Clock
from buildyard.master.db.builders import BuildersRepository
from buildyard.master.db.buildrequests import BuildRequestsRepository
from buildyard.master.db.builds import BuildsRepository
from buildyard.master.db.buildsets import BuildsetsRepository
from buildyard.master.db.changes import ChangesRepository
from buildyard.master.db.changesources import ChangeSourcesRepository
from buildyard.master.db.codebases import (
    CodebaseBranchesRepository,
    CodebaseCommitsRepository,
    CodebasesRepository,
)
from buildyard.master.db.config_rows import ConfigRowsRepository
from buildyard.master.db.engine import (
    make_engine,
    normalize_url,
    read_transaction,
    release_cache_memory,
    write_transaction,
)
from buildyard.master.db.logs import LogsRepository
from buildyard.master.db.masters import MastersRepository
from buildyard.master.db.projects import ProjectsRepository
from buildyard.master.db.schedulers import SchedulersRepository
from buildyard.master.db.sourcestamps import SourcestampsRepository
from buildyard.master.db.state import StateRepository
from buildyard.master.db.steps import StepsRepository
from buildyard.master.db.test_results import TestResultsRepository
from buildyard.master.db.users import UsersRepository
from buildyard.master.db.workers import WorkersRepository


class Database:
    def __init__(self, db_url: str, *, clock: Clock, basedir: Path | None = None) -> None:
        url = normalize_url(db_url, basedir=basedir)
        self._scratch: str | None = None
        if url.get_backend_name() == "sqlite" and (not url.database or url.database == ":memory:"):
            # "sqlite://" is a throwaway database; a private temp file gives it what one shared
            # in-memory connection cannot: concurrent transactions that do not see each other
            self._scratch = tempfile.mkdtemp(prefix="buildyard-memory-")
            url = url.set(database=str(Path(self._scratch) / "memory.sqlite"))
        self.url = url
        self.engine = make_engine(self.url)
        engine = self.engine
        self.masters = MastersRepository(engine=engine, clock=clock)
        self.builders = BuildersRepository(engine=engine, clock=clock)
        self.workers = WorkersRepository(engine=engine, clock=clock)
        self.schedulers = SchedulersRepository(engine=engine, clock=clock)
        self.changesources = ChangeSourcesRepository(engine=engine, clock=clock)
        self.state = StateRepository(engine=engine, clock=clock)
        self.projects = ProjectsRepository(engine=engine, clock=clock)
        self.users = UsersRepository(engine=engine, clock=clock)
        self.codebases = CodebasesRepository(engine=engine, clock=clock)
        self.codebase_branches = CodebaseBranchesRepository(engine=engine, clock=clock)
        self.codebase_commits = CodebaseCommitsRepository(engine=engine, clock=clock)
        self.sourcestamps = SourcestampsRepository(engine=engine, clock=clock)
        self.changes = ChangesRepository(engine=engine, clock=clock)
        self.buildsets = BuildsetsRepository(engine=engine, clock=clock)
        self.buildrequests = BuildRequestsRepository(engine=engine, clock=clock)
        self.builds = BuildsRepository(engine=engine, clock=clock)
        self.steps = StepsRepository(engine=engine, clock=clock)
        self.logs = LogsRepository(engine=engine, clock=clock)
        self.test_results = TestResultsRepository(engine=engine, clock=clock)
        self.config_rows = ConfigRowsRepository(engine=engine, clock=clock)

    @property
    def throwaway(self) -> bool:
        """Whether this is a ``sqlite://`` database, which lives only as long as this object."""
        return self._scratch is not None

    @property
    def backend(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction; pass its connection to repository methods as ``conn=``."""
        async with write_transaction(self.engine) as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        async with read_transaction(self.engine) as conn:
            yield conn

    def release_cache_memory(self) -> int:
        """Empty the idle connections' page caches (SQLite): see
        :func:`.engine.release_cache_memory`."""
        return release_cache_memory(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

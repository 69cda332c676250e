"""What starting a master imports: only what a plain master (SQLite, no PostgreSQL queue, no
local worker, no bcrypt password file, gz logs) uses, so that its start-up and idle memory do
not pay for the rest. Each probe runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# imported on first use only: the PostgreSQL queue (asyncpg), log codecs other than zlib/bz2,
# bcrypt, the worker's own package (local workers), and what structlog would pull in
_NOT_AT_START = [
    "asyncpg",
    "bcrypt",
    "buildyard.master.mq.postgres",
    "buildyard.worker.cli",
    "lz4",
    "rich",
    "twisted",
    "zstandard",
]

_PROBE = textwrap.dedent(
    """
    import importlib.util, sys
    import buildyard.master.master, buildyard.plugins
    print(sorted(m for m in {watched!r} if m in sys.modules))
    # hidden while structlog was imported, importable again afterwards (when installed)
    for name in ("rich", "twisted"):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    import structlog
    print(structlog.dev.rich is None)
    """
)


def _run(code: str) -> list[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()


def test_a_master_imports_none_of_what_it_does_not_use() -> None:
    out = _run(_PROBE.format(watched=_NOT_AT_START))
    assert out == ["[]", "True"]


def test_what_is_used_is_imported_when_used() -> None:
    out = _run(
        textwrap.dedent(
            """
            import sys
            from buildyard.master.config.master_config import MasterConfig
            from buildyard.master.db import compression
            from buildyard.master.master import make_mq
            from buildyard.master.www import htpasswd
            data = b"line\\n" * 100
            for method in ("lz4", "zstd", "br"):
                m = compression.method_id(method)
                assert compression.unpack(compression.pack(data, m), m) == data
            htpasswd.check("pw", "$2y$05$" + "a" * 53)
            url = "postgresql://u@127.0.0.1/db"
            mq = make_mq(MasterConfig(source="m.cfg", db_url=url, mq={"type": "postgres"}))
            print(type(mq).__name__)
            print(sorted(m for m in ("asyncpg", "bcrypt", "lz4", "zstandard") if m in sys.modules))
            """
        )
    )
    assert out == ["PostgresMQ", "['asyncpg', 'bcrypt', 'lz4', 'zstandard']"]


# a started master whose workers speak PB, without a web server: no Alembic (its database is
# current: migrations and the Buildbot-database check load it when they run), no aiohttp (the
# web server, the msgpack endpoint, HTTP clients load it when they run), no SQLAlchemy ORM
_NOT_IN_A_RUNNING_MASTER = ["aiohttp", "alembic", "mako", "sqlalchemy.orm"]

_MASTER_CFG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {'pb': {'port': 'tcp:0:interface=127.0.0.1'}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory())]
c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
"""

_START = textwrap.dedent(
    """
    import asyncio, pathlib, sys
    from buildyard.master.config.loader import load_master_config
    from buildyard.master.master import BuildMaster
    basedir = pathlib.Path({basedir!r})

    async def main():
        m = BuildMaster(basedir, config=load_master_config(basedir))
        await m.start()
        try:
            print("loaded:", sorted(n for n in {watched!r} if n in sys.modules))
        finally:
            await m.stop()

    asyncio.run(main())
    """
)


def test_a_started_master_without_a_web_server_loads_no_http_orm_or_migrations(
    tmp_path: Path,
) -> None:
    subprocess.run(
        [sys.executable, "-m", "buildyard.cli.main", "create-master", "-q", str(tmp_path)],
        check=True,
        timeout=120,
    )
    (tmp_path / "master.cfg").write_text(_MASTER_CFG)
    out = _run(_START.format(basedir=str(tmp_path), watched=_NOT_IN_A_RUNNING_MASTER))
    assert [line for line in out if line.startswith("loaded:")] == ["loaded: []"]


def test_the_asyncio_extension_loads_the_orm_only_for_its_orm_names() -> None:
    out = _run(
        textwrap.dedent(
            """
            import sys
            import buildyard
            from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncResult
            import sqlalchemy.ext.asyncio.engine as engine
            print("sqlalchemy.orm" in sys.modules, AsyncConnection is engine.AsyncConnection)
            from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
            import sqlalchemy.ext.asyncio.session as session
            print("sqlalchemy.orm" in sys.modules, AsyncSession is session.AsyncSession)
            namespace = {}
            exec("from sqlalchemy.ext.asyncio import *", namespace)
            print(sorted(n for n in ("AsyncEngine", "AsyncSession", "close_all_sessions")
                         if n in namespace))
            import sqlalchemy.ext.asyncio as package
            try:
                package.no_such_name
            except AttributeError as exc:
                print(exc)
            """
        )
    )
    assert out == [
        "False True",
        "True True",
        "['AsyncEngine', 'AsyncSession', 'close_all_sessions']",
        "module 'sqlalchemy.ext.asyncio' has no attribute 'no_such_name'",
    ]


def test_threads_asking_for_an_orm_name_at_once_all_get_it() -> None:
    # the package's own __init__ runs in the first thread that asks; the others wait for it
    # rather than finding the name missing
    out = _run(
        textwrap.dedent(
            """
            import threading
            import buildyard
            import sqlalchemy.ext.asyncio as package

            barrier = threading.Barrier(8)
            got = []

            def ask():
                barrier.wait()
                try:
                    got.append(package.AsyncSession.__name__)
                except AttributeError as exc:
                    got.append(f"missing: {exc}")

            threads = [threading.Thread(target=ask) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            print(sorted(got))
            """
        )
    )
    assert out == [str(["AsyncSession"] * 8)]

"""What starting a master imports: only what a plain master (SQLite, no PostgreSQL queue, no
local worker, no bcrypt password file, gz logs) uses, so that its start-up and idle memory do
not pay for the rest. Each probe runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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

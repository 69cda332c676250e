"""Alembic's environment: how revisions reach the database (loaded by Alembic, not imported).

Two ways in:

* :mod:`buildyard.master.db.migrate` hands over a synchronous connection in
  ``config.attributes["connection"]``, obtained with ``AsyncConnection.run_sync`` inside its own
  write transaction (Alembic's "connection sharing with asyncio" recipe). The migrations then run
  in that transaction, which the caller commits.
* Alembic commands run by a developer with only ``sqlalchemy.url`` set (see the package
  docstring) get an engine of their own from :func:`buildyard.master.db.engine.make_engine`,
  driven with ``asyncio.run``.

``target_metadata`` is the schema module's metadata so autogenerate can compare against it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from alembic import context

from buildyard.master.db.engine import make_engine, normalize_url, write_transaction
from buildyard.master.db.migrate import compare_options
from buildyard.master.db.schema import metadata

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

config = context.config


def _run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, **compare_options())
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(db_url: str) -> None:
    engine = make_engine(normalize_url(db_url))
    try:
        async with write_transaction(engine) as conn:
            await conn.run_sync(_run_migrations)
    finally:
        await engine.dispose()


def _main() -> None:
    shared: Connection | None = config.attributes.get("connection")
    if shared is not None:
        _run_migrations(shared)
        return
    db_url = config.get_main_option("sqlalchemy.url")
    if not db_url:
        raise RuntimeError("migrations need config.attributes['connection'] or sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=normalize_url(db_url), target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_with_own_engine(db_url))


_main()

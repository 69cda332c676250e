"""Schema migrations: bring a database to the head revision of ``migrations/`` with Alembic.

The Alembic configuration is built in code (:func:`alembic_config`); no ``alembic.ini`` is read.
:func:`upgrade` runs every pending revision in one write transaction (both backends have
transactional DDL), so a failed upgrade leaves the schema as it was. Several masters may start
against one PostgreSQL database at once: the upgrade takes a transaction-scoped advisory lock
before it reads the current revision, so one of them migrates and the others find the schema
current. On SQLite the ``BEGIN IMMEDIATE`` of the write transaction serialises them the same way.
That lock also matters inside one process: Alembic's ``op`` and ``context`` are process-wide
proxies, so two migrations must never interleave. Upgrades of one database are serialised by
the lock; do not upgrade two *different* databases concurrently in one process.

A database with tables but no recorded revision was not made by these migrations (or by an older
``metadata.create_all``); :func:`upgrade` refuses it with a :class:`DbError` rather than stamping
it, because nothing says its tables match any revision.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from buildyard.master.db.errors import DbError

if TYPE_CHECKING:
    from sqlalchemy.schema import FetchedValue

    from buildyard.master.db.connector import Database

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"
# pg_advisory_xact_lock key shared by every buildyard master migrating the same database
_PG_LOCK_KEY = 0x6275696C64796172  # b"buildyar"


def alembic_config(db_url: str | None = None) -> Config:
    """Alembic's configuration for our migrations; ``db_url`` only for Alembic's own commands."""
    cfg = Config()
    # Config values go through ConfigParser interpolation: escape "%" (paths, encoded passwords)
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if db_url is not None:
        cfg.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))
    return cfg


def _compare_server_default(
    _context: MigrationContext,
    _inspected_column: sa.Column[Any],
    _metadata_column: sa.Column[Any],
    inspected_default: str | None,
    _metadata_default: FetchedValue | None,
    rendered_metadata_default: str | None,
) -> bool | None:
    """Whether a server default changed; None leaves the decision to Alembic.

    Alembic's SQLite comparison sees the reflected ``('')`` and the metadata's ``''`` as
    different, so empty-string defaults are settled here (on both backends).
    """
    if inspected_default is None or rendered_metadata_default not in ("", "''"):
        return None
    inspected = re.sub(r"::[\w ]+$", "", inspected_default)  # PostgreSQL's ''::character varying
    while inspected.startswith("(") and inspected.endswith(")"):
        inspected = inspected[1:-1]
    return inspected != "''"


def compare_options() -> dict[str, Any]:
    """``MigrationContext`` options under which autogenerate compares types and server defaults."""
    return {"compare_type": True, "compare_server_default": _compare_server_default}


def _head(script: ScriptDirectory) -> str:
    head = script.get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise DbError(f"no migration revisions found in {MIGRATIONS_DIR}")
    return head


def head_revision() -> str:
    """The newest revision in ``migrations/versions``."""
    return _head(ScriptDirectory.from_config(alembic_config()))


def _current(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _check_known(conn: sa.Connection, current: str | None, script: ScriptDirectory) -> None:
    """Refuse a database these migrations cannot take to head."""
    if current is None:
        tables = set(sa.inspect(conn).get_table_names()) - {VERSION_TABLE}
        if tables:
            raise DbError(
                f"the database has {len(tables)} tables (e.g. {sorted(tables)[0]!r}) but no schema "
                f"revision in {VERSION_TABLE!r}: it was not created by buildyard's migrations, so "
                "its schema is unknown; refusing to upgrade it (use an empty database)"
            )
        return
    try:
        script.get_revision(current)
    except CommandError as exc:
        if len(current) == 3 and current.isdigit():
            # Buildbot numbers its revisions with three digits ("067" in 4.3.0), ours with four
            raise DbError(
                f"the database is a Buildbot database (schema revision {current!r}); buildyard "
                "does not adopt Buildbot's database files: give buildyard an empty database "
                "(its schema has the same tables)"
            ) from exc
        raise DbError(
            f"the database is at schema revision {current!r}, which this buildyard does not know "
            "(was it upgraded by a newer version?)"
        ) from exc


def _upgrade_sync(conn: sa.Connection) -> tuple[str | None, str]:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)
    head = _head(script)
    before = _current(conn)
    _check_known(conn, before, script)
    if before != head:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return before, head


async def upgrade(db: Database) -> bool:
    """Bring the schema to the head revision; True if anything changed, False if already there.

    Raises :class:`DbError` for a database with tables but no revision, a revision this code does
    not know, or a failure while migrating (the transaction is then rolled back).
    """
    try:
        async with db.transaction() as conn:
            before, head = await conn.run_sync(_upgrade_sync)
    except (sa.exc.SQLAlchemyError, CommandError) as exc:
        raise DbError(f"schema upgrade of the {db.backend} database failed: {exc}") from exc
    if before == head:
        log.debug("db_schema_current", revision=head)
        return False
    log.info("db_upgraded", from_revision=before, to_revision=head)
    return True


async def current_revision(db: Database) -> str | None:
    """The database's schema revision, None if it has none (empty or not ours)."""
    async with db.reading() as conn:
        return await conn.run_sync(_current)


async def is_current(db: Database) -> bool:
    """Whether the database is at the head revision."""
    return await current_revision(db) == head_revision()

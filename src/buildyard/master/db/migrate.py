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
A database made by Buildbot 4.3 is adopted when the caller asks for it (``upgrade-master``;
see :mod:`.adopt`), and refused by name otherwise, as are other Buildbot releases' databases.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog

from buildyard.master.db.errors import DbError
from buildyard.master.db.schema import metadata

# Alembic (and adopt, which uses its autogenerate) is imported where a migration or a comparison
# runs, not at import: every master start checks the revision, which needs neither, and Alembic
# with its dialect modules is a large share of a start's imports.
if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.schema import FetchedValue

    from buildyard.master.db import adopt
    from buildyard.master.db.connector import Database

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"
# pg_advisory_xact_lock key shared by every buildyard master migrating the same database
_PG_LOCK_KEY = 0x6275696C64796172  # b"buildyar"


def alembic_config(db_url: str | None = None) -> Config:
    """Alembic's configuration for our migrations; ``db_url`` only for Alembic's own commands."""
    from alembic.config import Config

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


_REVISION_LINE = re.compile(r"^(down_revision|revision)\b[^=]*=\s*(None|\"([^\"]*)\")", re.M)


@functools.cache
def head_revision() -> str:
    """The newest revision in ``migrations/versions``: the one no other revision names as its
    ``down_revision``, read from the files' ``revision`` lines without loading Alembic
    (tests/master/db/test_migrations.py checks it against Alembic's own answer)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"):
        for kind, _value, name in _REVISION_LINE.findall(path.read_text()):
            if kind == "revision":
                revisions.add(name)
            elif name:
                parents.add(name)
    heads = revisions - parents
    if len(heads) != 1:  # pragma: no cover - the package always ships one line of revisions
        raise DbError(f"expected one head revision in {MIGRATIONS_DIR}, found {sorted(heads)}")
    return heads.pop()


def _current(conn: sa.Connection) -> str | None:
    """The revision stored in ``alembic_version`` (None without one), read with plain SQL."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise DbError(f"{VERSION_TABLE} holds several revisions {sorted(rows)}: not ours")
    return rows[0] if rows else None


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
    from alembic.util import CommandError

    try:
        script.get_revision(current)
    except CommandError as exc:
        raise DbError(
            f"the database is at schema revision {current!r}, which this buildyard does not know "
            "(was it upgraded by a newer version?)"
        ) from exc


def _upgrade_sync(
    conn: sa.Connection, *, adopt_buildbot: bool, target: str | None
) -> tuple[str | None, str]:
    from alembic import command
    from alembic.script import ScriptDirectory

    from buildyard.master.db import adopt

    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)
    head = target or _head(script)
    before = _current(conn)
    buildbot = adopt.identify(conn, before)
    if buildbot is not None:
        if not buildbot.adoptable:
            raise DbError(adopt.refusal(buildbot))
        if not adopt_buildbot:
            raise DbError(
                f"the database was made by {buildbot.describe()}; 'buildyard upgrade-master' "
                "adopts it (and says what it does first)"
            )
        adopt.adopt(conn, buildbot, metadata=metadata, compare_options=compare_options())
        before = f"buildbot {buildbot.revision}"
    else:
        _check_known(conn, before, script)
    if before != head:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, head)
    return before, head


async def upgrade(db: Database, *, adopt_buildbot: bool = False, target: str | None = None) -> bool:
    """Bring the schema to the head revision; True if anything changed, False if already there.

    ``adopt_buildbot``: a Buildbot 4.3 database is adopted (see :mod:`.adopt`), in the same
    transaction as the migrations that follow; without it a Buildbot database is refused.
    ``target``: a revision to stop at instead of the head (``copy-db`` fills a database at
    Buildbot 4.3's tables, :data:`.adopt.ADOPTED_AS`, before the later revisions run).
    Raises :class:`DbError` for a database with tables but no revision, a revision this code does
    not know, a Buildbot database it cannot adopt, or a failure while migrating (the transaction
    is then rolled back).
    """
    from alembic.util import CommandError

    try:
        async with db.transaction() as conn:
            before, head = await conn.run_sync(
                functools.partial(_upgrade_sync, adopt_buildbot=adopt_buildbot, target=target)
            )
    except (sa.exc.SQLAlchemyError, CommandError) as exc:
        raise DbError(f"schema upgrade of the {db.backend} database failed: {exc}") from exc
    if before == head:
        log.debug("db_schema_current", revision=head)
        return False
    log.info("db_upgraded", from_revision=before, to_revision=head)
    return True


async def identify_buildbot(db: Database) -> adopt.BuildbotDatabase | None:
    """The Buildbot database ``db`` is, None if it is not one."""

    from buildyard.master.db import adopt

    def identify(conn: sa.Connection) -> adopt.BuildbotDatabase | None:
        return adopt.identify(conn, _current(conn))

    async with db.reading() as conn:
        return await conn.run_sync(identify)


async def current_revision(db: Database) -> str | None:
    """The database's schema revision, None if it has none (empty or not ours)."""
    async with db.reading() as conn:
        return await conn.run_sync(_current)


async def is_current(db: Database) -> bool:
    """Whether the database is at the head revision."""
    return await current_revision(db) == head_revision()

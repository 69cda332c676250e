"""Databases made by Buildbot: recognising one, and adopting a Buildbot 4.3 database in place.

Buildbot 3.4 and later record their schema revision in ``alembic_version`` as we do, numbered
with three digits (``059`` is 3.4's first, ``067`` is 4.3's); ours have four. Buildbot before 3.4
used sqlalchemy-migrate, whose ``migrate_version`` table holds a plain number instead.

buildyard's revision ``0001`` creates exactly the tables of Buildbot 4.3 (revision ``067``), with
the same columns, keys and indexes, and stores the same values in them (times, JSON properties,
log chunks with their compression ids, the saved state of schedulers and change sources under
Buildbot's object names and keys). Adopting such a database is therefore:

1. checking that its tables are that schema, table by table (Alembic's comparison with our
   metadata, the same one that keeps our migrations honest); any difference is refused, listed;
2. recording revision ``0001`` in place of ``067``;
3. running buildyard's later revisions, as for any database of ours.

The comparison in step 1 is with ``schema.py``'s metadata without what buildyard's later
revisions added to the schema (:data:`LATER_INDEXES`: ``0003``'s indexes of running builds
and kept logs;
``0002`` changes data only), which is revision ``0001``'s tables; step 3 then adds them. A
revision that changes the schema must be listed there (``tests/e2e/test_adopt_buildbot.py`` and
``tests/master/db/test_adopt.py`` adopt real Buildbot databases and fail otherwise).

Nothing else is rewritten: builds, steps, logs, changes, users, workers and object state stay
row for row.

A database of Buildbot 3.4 to 4.2 (revisions ``059`` to ``066``) is first brought to Buildbot
4.3's tables. Every Buildbot release since 3.4 only added to the schema: tables (projects in
3.9, the codebase tables in 4.3), nullable columns, indexes and foreign keys, and one column
that is NOT NULL once filled (``builds.locks_duration_s``, 4.0). So the differences from our
metadata are computed as in step 1, and if every one of them is an addition, it is made: the
missing tables created from our metadata, the missing columns added (nullable first, filled as
:data:`_FILLS` says, then made NOT NULL where ours are), the missing indexes and foreign keys
created. Any other difference (a column of another type, a table we do not know) is refused,
listed. Step 1 then runs as for a 4.3 database, on the result.

Buildbot before 3.4 (sqlalchemy-migrate) is refused with the release that made it, and the way
on (Buildbot 4.3.0's own ``buildbot upgrade-master`` brings such a database to ``067``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from buildyard.master.db.errors import DbError

# Buildbot's alembic revisions and the release that introduced each
BUILDBOT_RELEASES = {
    "059": "3.4",
    "060": "3.9",
    "061": "3.9",
    "062": "3.9",
    "063": "3.10",
    "064": "3.10",
    "065": "4.0",
    "066": "4.0",
    "067": "4.3",
}
ADOPTABLE = "067"
#: our revision whose schema is Buildbot 4.3's: an adopted database is recorded at it
ADOPTED_AS = "0001"
_VERSION_TABLE = "alembic_version"
_MIGRATE_TABLE = "migrate_version"  # sqlalchemy-migrate, Buildbot before 3.4
_SHOWN_DIFFERENCES = 10

#: How a column that a Buildbot release after 3.4 added is filled in the rows that exist when it
#: is added (as that release's own upgrade filled it); columns not named here stay NULL.
_FILLS: dict[tuple[str, str], Any] = {
    # 4.0: time spent waiting for locks, unknown for older builds: 0
    ("builds", "locks_duration_s"): sa.literal(0),
    # 3.10: when a step got its locks; older steps are taken to have had them when they started
    ("steps", "locks_acquired_at"): sa.column("started_at"),
}
#: NOT NULL columns added on SQLite with their fill as the column's default (see _add_column)
_KEPT_DEFAULTS: dict[tuple[str, str], str] = {("builds", "locks_duration_s"): "0"}
#: columns with a foreign key that Buildbot added after 3.4: their target and ON DELETE
_ADDED_KEY_COLUMNS: dict[tuple[str, str], tuple[str, str]] = {
    ("builders", "projectid"): ("projects.id", "SET NULL"),
    ("buildsets", "rebuilt_buildid"): ("builds.id", "SET NULL"),
}
#: indexes of ``schema.py`` that buildyard's revisions after ``0001`` create, as (table, index):
#: Buildbot 4.3 has none of them, so a database is compared with the metadata without them
#: before it is adopted (and brought to Buildbot 4.3's tables without making them), and gets
#: them from those revisions afterwards
LATER_INDEXES = frozenset({("builds", "builds_running_masterid"), ("logs", "logs_kept")})
#: the differences that an older Buildbot schema may have from 4.3's, all of them additions
_ADDITIONS = frozenset({"add_table", "add_column", "add_index", "add_fk"})


@dataclass(frozen=True, slots=True)
class BuildbotDatabase:
    """What a Buildbot database says about itself."""

    revision: str  # "067", or "migrate 58" for a sqlalchemy-migrate version
    release: str | None  # the Buildbot release of that revision, None when unknown

    @property
    def adoptable(self) -> bool:
        """Adopted as it is (4.3), or after adding what later releases added (3.4 to 4.2)."""
        return self.release is not None and self.revision in BUILDBOT_RELEASES

    def describe(self) -> str:
        made_by = f"Buildbot {self.release}" if self.release else "an unknown Buildbot release"
        return f"{made_by} (schema revision {self.revision!r})"


def identify(conn: sa.Connection, revision: str | None) -> BuildbotDatabase | None:
    """The Buildbot database behind ``conn``, None when it is not one (``revision`` is its
    ``alembic_version``)."""
    if revision is not None:
        if len(revision) == 3 and revision.isdigit():
            return BuildbotDatabase(revision, BUILDBOT_RELEASES.get(revision))
        return None
    if _MIGRATE_TABLE in sa.inspect(conn).get_table_names():
        row = conn.execute(sa.text(f"SELECT version FROM {_MIGRATE_TABLE}")).first()
        version = "?" if row is None else str(row[0])
        return BuildbotDatabase(f"migrate {version}", "older than 3.4")
    return None


def refusal(found: BuildbotDatabase) -> str:
    """Why ``found`` cannot be adopted, and what to do instead."""
    if found.release is None:
        return (
            f"the database was made by {found.describe()}, which buildyard does not know "
            f"(the newest Buildbot revision it knows is {ADOPTABLE!r}, Buildbot 4.3); refusing "
            "to adopt it"
        )
    return (
        f"the database was made by {found.describe()}; buildyard adopts the databases of "
        "Buildbot 3.4 and later (revisions '059' to "
        f"{ADOPTABLE!r}) only: upgrade it with Buildbot 4.3.0 first "
        "('buildbot upgrade-master' of buildbot==4.3.0), then run 'buildyard upgrade-master'"
    )


def plan(found: BuildbotDatabase) -> list[str]:
    """What adopting ``found`` does, one sentence a step, for the user to read first."""
    older = found.revision != ADOPTABLE
    return [
        f"the database was made by {found.describe()}; buildyard adopts it in place:",
        *(
            [
                "add what Buildbot's releases since then added to the schema (tables, columns, "
                "indexes; builds.locks_duration_s filled with 0 and steps.locks_acquired_at "
                "with the step's start, as Buildbot 4.3's upgrade does)"
            ]
            if older
            else []
        ),
        "check that its tables are Buildbot 4.3's schema (any difference is refused, listed)",
        f"record buildyard's schema revision {ADOPTED_AS!r} in place of {found.revision!r}, "
        "then apply buildyard's later revisions",
        "keep every row: builds, steps, logs, changes, source stamps, properties, users, "
        "workers, and the state of schedulers and change sources (a GitPoller's last "
        "revisions, a Nightly's last build)",
    ]


def _describe(diff: Any) -> str:
    if isinstance(diff, list):  # column modifications come grouped
        return "; ".join(_describe(d) for d in diff)
    kind, *rest = diff
    shown = []
    for item in rest:
        name = getattr(item, "name", None)
        table = getattr(getattr(item, "table", None), "name", None)
        if name is not None:
            shown.append(f"{table}.{name}" if table and table != name else str(name))
        elif isinstance(item, str | int | bool) or item is None:
            shown.append(repr(item))
    return f"{kind} {' '.join(shown)}".strip()


def _describe_refused(diff: Any) -> str:
    """:func:`_describe`, but a missing foreign key is named by its columns and target."""
    if isinstance(diff, tuple) and diff[0] == "add_fk":
        fk = diff[1]
        columns = ", ".join(f"{fk.table.name}.{c.name}" for c in fk.columns)
        targets = ", ".join(f"{e.column.table.name}.{e.column.name}" for e in fk.elements)
        return f"the foreign key of {columns} to {targets} is missing"
    return _describe(diff)


def adopt(
    conn: sa.Connection,
    found: BuildbotDatabase,
    *,
    metadata: sa.MetaData,
    compare_options: dict[str, Any],
) -> None:
    """Check ``found``'s schema against ``metadata`` and record it at :data:`ADOPTED_AS`, in the
    caller's transaction; :class:`DbError` naming what is wrong if it cannot be adopted."""
    if not found.adoptable:
        raise DbError(refusal(found))
    metadata = buildbot_schema(metadata)
    if found.revision != ADOPTABLE:
        _add_later_releases_additions(conn, found, metadata, compare_options)
    differences = remaining_differences(conn, metadata, compare_options)
    if differences:
        shown = [_describe(d) for d in differences[:_SHOWN_DIFFERENCES]]
        more = len(differences) - len(shown)
        raise DbError(
            f"the database was made by {found.describe()} but its tables differ from Buildbot "
            f"4.3's schema in {len(differences)} "
            f"{'place' if len(differences) == 1 else 'places'} ({'; '.join(shown)}"
            f"{f'; and {more} more' if more else ''}); refusing to adopt it"
        )
    conn.execute(
        sa.text(f"UPDATE {_VERSION_TABLE} SET version_num = :ours WHERE version_num = :theirs"),
        {"ours": ADOPTED_AS, "theirs": found.revision},
    )


def buildbot_schema(metadata: sa.MetaData) -> sa.MetaData:
    """``metadata`` as it was at revision ``0001``, Buildbot 4.3's tables: a copy without
    :data:`LATER_INDEXES`."""
    copy = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(copy)
    for table_name, index_name in LATER_INDEXES:
        table = copy.tables[table_name]
        index = next(i for i in table.indexes if i.name == index_name)
        table.indexes.remove(index)
    return copy


def _differences(
    conn: sa.Connection, metadata: sa.MetaData, compare_options: dict[str, Any]
) -> list[Any]:
    context = MigrationContext.configure(conn, opts=compare_options)
    return [
        d
        for d in compare_metadata(context, metadata)
        # alembic_version is not in our metadata
        if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == _VERSION_TABLE)
    ]


def remaining_differences(
    conn: sa.Connection, metadata: sa.MetaData, compare_options: dict[str, Any]
) -> list[Any]:
    """How the database's tables differ from ``metadata``, but for what adopting an older
    release's database on SQLite leaves on purpose (see :func:`_kept_on_sqlite`)."""
    return [
        d for d in _differences(conn, metadata, compare_options) if not _kept_on_sqlite(conn, d)
    ]


def _add_later_releases_additions(
    conn: sa.Connection,
    found: BuildbotDatabase,
    metadata: sa.MetaData,
    compare_options: dict[str, Any],
) -> None:
    """Bring a Buildbot 3.4-4.2 schema to 4.3's by making the additions it lacks (see the
    module's documentation); :class:`DbError` listing any difference that is not one."""
    differences = _differences(conn, metadata, compare_options)
    new_tables = {d[1].name for d in differences if isinstance(d, tuple) and d[0] == "add_table"}
    columns: dict[str, list[sa.Column[Any]]] = {}
    for d in differences:
        if isinstance(d, tuple) and d[0] == "add_column":
            columns.setdefault(d[2], []).append(d[3])
    new_columns = {(table, column.name) for table, cols in columns.items() for column in cols}

    def accepted(d: Any) -> bool:
        if not (isinstance(d, tuple) and d[0] in _ADDITIONS):
            return False
        if d[0] != "add_fk":
            return True
        # Buildbot's releases added foreign keys only with their new columns or tables (made
        # with them below); one missing on a column that is there was removed by hand
        fk = d[1]
        return fk.table.name in new_tables or all(
            (fk.table.name, c.name) in new_columns for c in fk.columns
        )

    other = [d for d in differences if not accepted(d)]
    if other:
        shown = [_describe_refused(d) for d in other[:_SHOWN_DIFFERENCES]]
        raise DbError(
            f"the database was made by {found.describe()} but its tables differ from that "
            f"release's schema in ways no Buildbot release made ({'; '.join(shown)}"
            f"{f'; and {len(other) - len(shown)} more' if len(other) > len(shown) else ''}); "
            "refusing to adopt it"
        )
    # tables first (in dependency order: a new column may refer to a new table), with their
    # indexes and keys
    for table in metadata.sorted_tables:
        if table.name in new_tables:
            table.create(conn)
    for table_name, added in columns.items():
        for column in added:
            _add_column(conn, table_name, column)
    # what the comparison finds missing now: indexes on tables that were there (a missing
    # key on a column that was there was refused above)
    for d in _differences(conn, metadata, compare_options):
        if d[0] == "add_index" and d[1].table.name not in new_tables:
            d[1].create(conn)


def _add_column(conn: sa.Connection, table_name: str, column: sa.Column[Any]) -> None:
    """Add ``column`` (of our metadata) to the table, filled in the rows already there.

    Plain ``ALTER TABLE ... ADD COLUMN`` on both backends, never a rebuild of the table: SQLite
    rebuilds a table by dropping it, and dropping ``builds`` with foreign keys enforced would
    cascade to every table that refers to it. SQLite cannot make an added column NOT NULL
    afterwards, so there a NOT NULL column is added with its fill as its default (the one
    difference from our metadata that an adopted SQLite database keeps, see
    :data:`_KEPT_DEFAULTS`: every row that buildyard writes gives the value)."""
    preparer = conn.dialect.identifier_preparer
    ddl = str(
        sa.schema.CreateColumn(sa.Column(column.name, column.type)).compile(dialect=conn.dialect)
    )
    for fk in column.foreign_keys:
        target = fk.column
        ddl_fk = f" REFERENCES {preparer.quote(target.table.name)} ({preparer.quote(target.name)})"
        if fk.ondelete:
            ddl_fk += f" ON DELETE {fk.ondelete}"
        ddl = f"{ddl}{ddl_fk}"
    fill = _FILLS.get((table_name, column.name))
    table = preparer.quote(table_name)
    name = preparer.quote(column.name)
    sqlite_not_null = conn.dialect.name == "sqlite" and not column.nullable
    if sqlite_not_null:
        if (table_name, column.name) not in _KEPT_DEFAULTS:
            raise DbError(f"cannot add the NOT NULL column {table_name}.{column.name} on SQLite")
        ddl = f"{ddl} NOT NULL DEFAULT {_KEPT_DEFAULTS[table_name, column.name]}"
    conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {ddl}"))
    if fill is not None and not sqlite_not_null:
        rows = sa.table(table_name, sa.column(column.name))
        conn.execute(rows.update().values({column.name: fill}))
    if not column.nullable and not sqlite_not_null:
        conn.execute(sa.text(f"ALTER TABLE {table} ALTER COLUMN {name} SET NOT NULL"))


def _kept_on_sqlite(conn: sa.Connection, diff: Any) -> bool:
    """Whether ``diff`` is one that :func:`_add_column` leaves on SQLite, checked to hold as
    meant: the default given to a NOT NULL column, or a foreign key added with its column
    (SQLite keeps it as a column constraint, which SQLAlchemy reflects without its name and
    options; SQLite's own list of the table's keys is checked instead)."""
    if conn.dialect.name != "sqlite":
        return False
    if isinstance(diff, list):
        return all(d[0] == "modify_default" and (d[2], d[3]) in _KEPT_DEFAULTS for d in diff)
    if diff[0] not in ("remove_fk", "add_fk"):
        return False
    fk = diff[1]
    columns = [c.name for c in fk.columns]
    if len(columns) != 1 or (fk.table.name, columns[0]) not in _ADDED_KEY_COLUMNS:
        return False
    target, ondelete = _ADDED_KEY_COLUMNS[fk.table.name, columns[0]]
    listed = conn.exec_driver_sql(f"PRAGMA foreign_key_list({fk.table.name})").fetchall()
    # (id, seq, table, from, to, on_update, on_delete, match)
    table, to = target.split(".")
    return any(
        (row[2], row[3], row[4], row[6]) == (table, columns[0], to, ondelete) for row in listed
    )

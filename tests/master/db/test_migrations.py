"""Migrations on both backends: what ``migrate.upgrade`` builds, and that it is the schema
docs/database.md documents.

Three sources must agree: the schema as docs/database.md states it (its "Tables" section, in a
one-line-per-table notation), the database that the migrations build (reflected with
SQLAlchemy's inspector), and ``schema.py``'s metadata (compared by Alembic's autogenerate).
A schema.py change without a migration, or a migration that drifts from the docs, fails here.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import sqlalchemy as sa
import structlog
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from buildyard.master.db import migrate
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import DbError
from buildyard.master.db.schema import metadata
from buildyard.testing.clock import FakeClock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

SPEC = Path(__file__).parents[3] / "docs" / "database.md"
T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# The shape of a table, as the spec states it and as the database reflects it


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: str  # INT, SMALLINT, BIGINT, TEXT, VARCHAR, BLOB
    length: int | None  # VARCHAR only (BLOB lengths are not kept by either backend)
    nullable: bool
    default: str | None


@dataclass(frozen=True, slots=True)
class ForeignKey:
    column: str
    target: str  # "table.column"
    ondelete: str | None  # "cascade", "setnull"


@dataclass(frozen=True, slots=True)
class Index:
    name: str
    columns: tuple[str, ...]
    unique: bool
    where: str | None = None  # a partial index's predicate, as _predicate() spells it


def _predicate(text: object) -> str | None:
    """A partial index's predicate in one spelling."""
    if text is None:
        return None
    # PostgreSQL also casts (``(type)::text <> 'd'::text``) and spells != as <>; the
    # predicates here are simple, so their parentheses go too
    spelled = re.sub(r"::(character varying|[a-z]+)", "", str(text)).replace("<>", "!=")
    return " ".join(spelled.replace("(", "").replace(")", "").split()).upper()


@dataclass(frozen=True, slots=True)
class Table:
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: frozenset[ForeignKey]
    indexes: frozenset[Index]


# ---------------------------------------------------------------------------------------------
# docs/database.md, "Tables":
# `col TYPE [PK|NN] [=default] [→table.col(on-delete)]`; `idx: [U ]name(cols)[ WHERE pred]; ...`

_SECTION_RE = re.compile(r"^## Tables \((\d+)\)\n(.*?)^## ", re.MULTILINE | re.DOTALL)
_TABLE_RE = re.compile(r"^- \*\*(\w+)\*\*: (.+?)\s*$")
_IDX_RE = re.compile(r"^\s+idx: (.+?)\s*$")
_COLUMN_RE = re.compile(r"^(\w+) ([A-Z]+)(?:\((\d+)\))?(?:/\w+)?((?: \S+)*)$")
_REF_RE = re.compile(r"^→(\w+\.\w+)\((cascade|setnull)\)$")
_INDEX_RE = re.compile(r"^(U )?(\w+)\(([\w,]+)\)(?: WHERE (.+))?$")
_SPEC_KINDS = {"INT": "INT", "SMALLINT": "SMALLINT", "TEXT": "TEXT", "VARCHAR": "VARCHAR"}


def _spec_column(table: str, text: str) -> tuple[Column, bool, ForeignKey | None]:
    match = _COLUMN_RE.match(text)
    if match is None:
        raise ValueError(f"spec: cannot parse column {text!r} of {table}")
    name, type_, length, flags = match.groups()
    pk = nn = False
    default: str | None = None
    fk: ForeignKey | None = None
    for token in flags.split():
        if token == "PK":
            pk = True
        elif token == "NN":
            nn = True
        elif token.startswith("="):
            default = token[1:].strip("'")
        elif ref := _REF_RE.match(token):
            fk = ForeignKey(name, ref[1], ref[2])
        else:
            raise ValueError(f"spec: unknown token {token!r} in {table}.{name}")
    kind = "BLOB" if type_ == "BLOB" else _SPEC_KINDS[type_]
    varchar_length = int(length) if kind == "VARCHAR" else None
    column = Column(name, kind, varchar_length, nullable=not (pk or nn), default=default)
    return column, pk, fk


def parse_spec(text: str) -> dict[str, Table]:
    """The "Tables" section of docs/database.md, table by table."""
    section = _SECTION_RE.search(text)
    assert section is not None, "docs/database.md has no '## Tables (N)' section"
    tables: dict[str, Table] = {}
    current: str | None = None
    for line in section[2].splitlines():
        if line.startswith("- "):
            match = _TABLE_RE.match(line)
            if match is None:
                raise ValueError(f"spec: cannot parse table line {line!r}")
            current, columns_text = match[1], match[2]
            columns, pk, fks = [], [], set()
            for column_text in columns_text.split("; "):
                column, is_pk, fk = _spec_column(current, column_text)
                columns.append(column)
                pk += [column.name] if is_pk else []
                fks |= {fk} if fk else set()
            tables[current] = Table(tuple(columns), tuple(pk), frozenset(fks), frozenset())
        elif idx := _IDX_RE.match(line):
            assert current is not None, f"spec: index line before any table: {line!r}"
            indexes = set()
            for index_text in idx[1].split("; "):
                index = _INDEX_RE.match(index_text)
                if index is None:
                    raise ValueError(f"spec: cannot parse index {index_text!r} of {current}")
                indexes.add(
                    Index(
                        index[2],
                        tuple(index[3].split(",")),
                        unique=bool(index[1]),
                        where=_predicate(index[4]),
                    )
                )
            tables[current] = replace(tables[current], indexes=frozenset(indexes))
    assert len(tables) == int(section[1]), f"spec announces {section[1]} tables"
    return tables


# ---------------------------------------------------------------------------------------------
# The database, reflected into the same shapes


def _kind(type_: sa.types.TypeEngine[Any]) -> tuple[str, int | None]:
    # most specific first: SmallInteger/BigInteger are Integers, Text is a String
    for cls, kind in (
        (sa.SmallInteger, "SMALLINT"),
        (sa.BigInteger, "BIGINT"),
        (sa.Integer, "INT"),
        (sa.Text, "TEXT"),
        (sa.LargeBinary, "BLOB"),
    ):
        if isinstance(type_, cls):
            return kind, None
    if isinstance(type_, sa.String):
        return "VARCHAR", type_.length
    raise AssertionError(f"unexpected column type {type_!r}")


def _default(reflected: str | None) -> str | None:
    """A reflected default as the spec writes it: ``'0'`` -> ``0``, ``''::varchar`` -> ``''``."""
    if reflected is None or reflected.startswith("nextval("):  # PostgreSQL's SERIAL
        return None
    value = re.sub(r"::[\w ]+$", "", reflected.strip("()"))
    return value.strip("'")


def _ondelete(options: dict[str, Any]) -> str | None:
    action = options.get("ondelete")
    return None if action is None else str(action).lower().replace(" ", "")


def _reflect_sync(conn: sa.Connection) -> dict[str, Table]:
    inspector = sa.inspect(conn)
    tables: dict[str, Table] = {}
    for name in inspector.get_table_names():
        if name == migrate.VERSION_TABLE:
            continue
        columns = tuple(
            Column(c["name"], *_kind(c["type"]), c["nullable"], _default(c.get("default")))
            for c in inspector.get_columns(name)
        )
        fks = frozenset(
            ForeignKey(
                column,
                f"{fk['referred_table']}.{referred}",
                _ondelete(dict(fk.get("options", {}))),
            )
            for fk in inspector.get_foreign_keys(name)
            for column, referred in zip(
                fk["constrained_columns"], fk["referred_columns"], strict=True
            )
        )
        indexes = frozenset(
            Index(
                i["name"] or "",
                tuple(c or "" for c in i["column_names"]),
                bool(i["unique"]),
                _predicate(i.get("dialect_options", {}).get(f"{conn.dialect.name}_where")),
            )
            for i in inspector.get_indexes(name)
        )
        # the spec states uniqueness through unique indexes only
        assert inspector.get_unique_constraints(name) == [], name
        pk = tuple(inspector.get_pk_constraint(name)["constrained_columns"])
        tables[name] = Table(columns, pk, fks, indexes)
    return tables


def schema_problems(expected: dict[str, Table], actual: dict[str, Table]) -> list[str]:
    """Every difference between two schemas, one readable line each."""
    problems = []
    if set(expected) != set(actual):
        problems.append(
            f"tables missing: {sorted(set(expected) - set(actual))}, "
            f"unexpected: {sorted(set(actual) - set(expected))}"
        )
    for name in sorted(set(expected) & set(actual)):
        want, got = expected[name], actual[name]
        want_names = [c.name for c in want.columns]
        got_names = [c.name for c in got.columns]
        if want_names != got_names:
            problems.append(f"{name}: columns {got_names}, spec says {want_names}")
        for want_col, got_col in zip(want.columns, got.columns, strict=False):
            if want_col != got_col and want_col.name == got_col.name:
                problems.append(f"{name}.{want_col.name}: {got_col}, spec says {want_col}")
        for field in ("primary_key", "foreign_keys", "indexes"):
            if getattr(want, field) != getattr(got, field):
                problems.append(
                    f"{name}: {field} {getattr(got, field)}, spec says {getattr(want, field)}"
                )
    return problems


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture
async def empty_db(db_url: str) -> AsyncIterator[Database]:
    """A fresh database with no tables at all (the ``database`` fixture's is already migrated)."""
    db = Database(db_url, clock=FakeClock())
    try:
        yield db
    finally:
        await db.close()


async def _read(db: Database, fn: Callable[[sa.Connection], T]) -> T:
    async with db.reading() as conn:
        return await conn.run_sync(fn)


def _dump_sync(conn: sa.Connection) -> dict[str, object]:
    """Everything the inspector sees, plus the recorded revision: to compare before/after."""
    inspector = sa.inspect(conn)
    dump: dict[str, object] = {
        table: (
            [repr(c) for c in inspector.get_columns(table)],
            inspector.get_pk_constraint(table),
            sorted(repr(fk) for fk in inspector.get_foreign_keys(table)),
            # a partial index's predicate is reflected as a clause object: compared as its text
            sorted(
                repr({**i, "dialect_options": {k: str(v) for k, v in i["dialect_options"].items()}})
                for i in inspector.get_indexes(table)
            ),
            sorted(repr(u) for u in inspector.get_unique_constraints(table)),
        )
        for table in inspector.get_table_names()
    }
    version_rows = conn.execute(sa.text("SELECT version_num FROM alembic_version"))
    dump["alembic_version rows"] = [tuple(row) for row in version_rows]
    return dump


def _table_names_sync(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


# ---------------------------------------------------------------------------------------------
# The tests


def test_head_revision_read_from_the_files_is_alembics_head() -> None:
    """A start reads the head revision from the files' ``revision`` lines, without Alembic."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert migrate.head_revision() == script.get_current_head()
    assert next(r.revision for r in script.walk_revisions()) == migrate.head_revision()


async def test_upgrade_creates_the_full_schema_on_an_empty_database(empty_db: Database) -> None:
    assert await migrate.current_revision(empty_db) is None
    assert await migrate.is_current(empty_db) is False

    with structlog.testing.capture_logs() as logs:
        assert await migrate.upgrade(empty_db) is True

    assert await _read(empty_db, _table_names_sync) == set(metadata.tables) | {"alembic_version"}
    assert await migrate.current_revision(empty_db) == migrate.head_revision()
    assert await migrate.is_current(empty_db) is True
    upgraded = [e for e in logs if e["event"] == "db_upgraded"]
    assert upgraded == [
        {
            "event": "db_upgraded",
            "log_level": "info",
            "from_revision": None,
            "to_revision": migrate.head_revision(),
        }
    ]
    # the tables work: ids are generated, defaults applied
    assert await empty_db.masters.find_master_id("host:/srv/a") == 1


async def test_upgrade_at_head_returns_false_and_changes_nothing(empty_db: Database) -> None:
    assert await migrate.upgrade(empty_db) is True
    before = await _read(empty_db, _dump_sync)
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    sa.event.listen(empty_db.engine.sync_engine, "before_cursor_execute", record)
    try:
        assert await migrate.upgrade(empty_db) is False
    finally:
        sa.event.remove(empty_db.engine.sync_engine, "before_cursor_execute", record)

    changes = [
        s for s in statements if re.match(r"\s*(CREATE|ALTER|DROP|INSERT|UPDATE|DELETE)", s, re.I)
    ]
    assert changes == []
    assert await _read(empty_db, _dump_sync) == before


async def test_migrated_schema_matches_the_spec_table_by_table(empty_db: Database) -> None:
    await migrate.upgrade(empty_db)
    reflected = await _read(empty_db, _reflect_sync)
    problems = schema_problems(parse_spec(SPEC.read_text(encoding="utf-8")), reflected)
    assert not problems, "\n".join(problems)


async def test_schema_metadata_and_migrated_database_agree(empty_db: Database) -> None:
    """A schema.py change without a migration (or the reverse) fails here."""
    await migrate.upgrade(empty_db)
    assert await _read(empty_db, lambda conn: _metadata_diff(conn, metadata)) == []


def _metadata_diff(conn: sa.Connection, target: sa.MetaData) -> list[Any]:
    context = MigrationContext.configure(conn, opts=migrate.compare_options())
    return list(compare_metadata(context, target))


async def test_metadata_comparison_sees_columns_types_indexes_and_fk_actions(
    empty_db: Database,
) -> None:
    await migrate.upgrade(empty_db)
    changed = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["masters"].append_column(sa.Column("extra", sa.Integer))
    changed.tables["workers"].c.name.type = sa.String(60)
    sa.Index("masters_last_active", changed.tables["masters"].c.last_active)
    builds = changed.tables["builds"]
    builds.append_constraint(
        sa.ForeignKeyConstraint(["masterid"], ["masters.id"], ondelete="SET NULL")
    )

    diff = await _read(empty_db, lambda conn: _metadata_diff(conn, changed))

    kinds = {entry[0][0] if isinstance(entry, list) else entry[0] for entry in diff}
    assert {"add_column", "modify_type", "add_index", "add_fk"} <= kinds


def test_spec_comparison_reports_each_kind_of_difference() -> None:
    spec = parse_spec(SPEC.read_text(encoding="utf-8"))
    masters, steps = spec["masters"], spec["steps"]
    broken = dict(spec)
    del broken["tags"]
    broken["masters"] = replace(
        masters,
        columns=(replace(masters.columns[0], kind="TEXT"), *masters.columns[1:]),
        primary_key=(),
    )
    broken["steps"] = replace(
        steps,
        columns=tuple(replace(c, nullable=True) if c.name == "name" else c for c in steps.columns),
        foreign_keys=frozenset(replace(fk, ondelete="setnull") for fk in steps.foreign_keys),
        indexes=frozenset(replace(i, unique=False) for i in steps.indexes),
    )

    problems = schema_problems(spec, broken)

    assert problems[0].startswith("tables missing: ['tags']")
    assert any(p.startswith("masters.id:") and "kind='TEXT'" in p for p in problems)
    assert any(p.startswith("masters: primary_key") for p in problems)
    assert any(p.startswith("steps.name:") and "nullable=True" in p for p in problems)
    assert any(p.startswith("steps: foreign_keys") for p in problems)
    assert any(p.startswith("steps: indexes") for p in problems)


def test_spec_parser_reads_types_flags_references_and_indexes() -> None:
    spec = parse_spec(SPEC.read_text(encoding="utf-8"))
    assert len(spec) == 42
    changes = spec["changes"]
    assert changes.primary_key == ("changeid",)
    assert Column("repository", "VARCHAR", 512, nullable=False, default="") in changes.columns
    assert ForeignKey("parent_changeids", "changes.changeid", "setnull") in changes.foreign_keys
    assert Index("changes_author", ("author",), unique=False) in changes.indexes
    assert Column("info", "TEXT", None, nullable=False, default=None) in spec["workers"].columns
    assert Index("builds_number", ("builderid", "number"), unique=True) in spec["builds"].indexes
    assert spec["patches"].indexes == frozenset()
    # a partial index, with its predicate as both backends reflect it once spelled alike
    running = Index("builds_running_masterid", ("masterid",), False, "COMPLETE_AT IS NULL")
    assert running in spec["builds"].indexes
    assert Index("logs_kept", ("id",), False, "TYPE != 'D'") in spec["logs"].indexes
    assert _predicate("((type)::text <> 'd'::text)") == _predicate("type != 'd'")
    with pytest.raises(ValueError, match="unknown token 'UNIQUE'"):
        parse_spec(SPEC.read_text(encoding="utf-8").replace("active INT NN", "active INT UNIQUE"))


async def test_buildsets_references_to_builds_are_named(empty_db: Database) -> None:
    await migrate.upgrade(empty_db)
    fks = await _read(empty_db, lambda conn: sa.inspect(conn).get_foreign_keys("buildsets"))
    assert {(fk["name"], fk["constrained_columns"][0]) for fk in fks} == {
        ("buildsets_parent_buildid_fkey", "parent_buildid"),
        ("buildsets_rebuilt_buildid_fkey", "rebuilt_buildid"),
    }


async def test_upgrade_refuses_tables_without_a_revision(empty_db: Database) -> None:
    async with empty_db.transaction() as conn:
        await conn.run_sync(metadata.create_all)

    with pytest.raises(DbError, match="no schema revision in 'alembic_version'"):
        await migrate.upgrade(empty_db)

    assert "alembic_version" not in await _read(empty_db, _table_names_sync)
    assert await migrate.current_revision(empty_db) is None


async def test_upgrade_refuses_an_unknown_revision(empty_db: Database) -> None:
    await migrate.upgrade(empty_db)
    async with empty_db.transaction() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00dfeed'"))

    with pytest.raises(DbError, match="revision 'f00dfeed', which this buildyard does not know"):
        await migrate.upgrade(empty_db)
    assert await migrate.is_current(empty_db) is False


async def test_downgrade_to_base_drops_everything_and_upgrade_rebuilds(empty_db: Database) -> None:
    await migrate.upgrade(empty_db)

    def downgrade(conn: sa.Connection) -> None:
        cfg = migrate.alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")

    async with empty_db.transaction() as conn:
        await conn.run_sync(downgrade)

    assert await _read(empty_db, _table_names_sync) == {"alembic_version"}
    assert await migrate.current_revision(empty_db) is None
    assert await migrate.upgrade(empty_db) is True
    assert await migrate.is_current(empty_db) is True


async def test_concurrent_upgrades_migrate_once(db_url: str) -> None:
    """Masters starting together on one database: one migrates, the others find it current."""
    dbs = [Database(db_url, clock=FakeClock()) for _ in range(3)]
    try:
        # without the database-side lock the upgrades deadlock: bound the wait
        async with asyncio.timeout(60):
            results = await asyncio.gather(*(migrate.upgrade(db) for db in dbs))
        assert sorted(results) == [False, False, True]
        assert await migrate.is_current(dbs[0])
    finally:
        for db in dbs:
            await db.close()

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

The comparison in step 1 is with ``schema.py``'s metadata, which is revision ``0001``'s tables
as long as the later revisions change data only (``0002`` does); a revision that changes the
schema must give step 1 the tables of ``0001`` instead (``tests/e2e/test_adopt_buildbot.py``
and ``tests/master/db/test_adopt.py`` adopt real Buildbot databases and fail otherwise).

Nothing else is rewritten: builds, steps, logs, changes, users, workers and object state stay
row for row. Older Buildbot schemas are refused with the release that made them, and the way on
(Buildbot 4.3.0's own ``buildbot upgrade-master`` brings them to ``067``).
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


@dataclass(frozen=True, slots=True)
class BuildbotDatabase:
    """What a Buildbot database says about itself."""

    revision: str  # "067", or "migrate 58" for a sqlalchemy-migrate version
    release: str | None  # the Buildbot release of that revision, None when unknown

    @property
    def adoptable(self) -> bool:
        return self.revision == ADOPTABLE

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
        f"the database was made by {found.describe()}; buildyard adopts Buildbot 4.3 databases "
        f"(revision {ADOPTABLE!r}) only: upgrade it with Buildbot 4.3.0 first "
        "('buildbot upgrade-master' of buildbot==4.3.0), then run 'buildyard upgrade-master'"
    )


def plan(found: BuildbotDatabase) -> list[str]:
    """What adopting ``found`` does, one sentence a step, for the user to read first."""
    return [
        f"the database was made by {found.describe()}; buildyard adopts it in place:",
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
    context = MigrationContext.configure(conn, opts=compare_options)
    differences = [
        d
        for d in compare_metadata(context, metadata)
        # alembic_version is not in our metadata
        if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == _VERSION_TABLE)
    ]
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

"""Adopting a database made by Buildbot, and refusing the ones buildyard cannot adopt.

The Buildbot database here is the real thing: the one stock Buildbot 4.3.0's ``create-master``
writes (made once per session, copied per test). Full adoption of a database with history, on
a real master, is in ``tests/e2e/test_adopt_buildbot.py``.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from buildyard.master.db import adopt, migrate
from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import DbError
from buildyard.master.schedulers.timed import Nightly
from buildyard.master.schedulers.triggerable import Dependent
from buildyard.testing.clock import FakeClock
from buildyard.testing.processes import buildyard
from buildyard.testing.stock import buildbot3_venv, buildbot_venv
from tests.master.db import _rows

# the stock masters that make the databases run on one xdist worker
pytestmark = pytest.mark.xdist_group("adopt-db")


@pytest.fixture(scope="session")
def buildbot_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database as stock Buildbot 4.3.0's create-master makes it."""
    basedir = tmp_path_factory.mktemp("buildbot") / "master"
    subprocess.run(
        [str(buildbot_venv() / "bin" / "buildbot"), "create-master", "-q", str(basedir)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return basedir / "state.sqlite"


@pytest.fixture
async def buildbot_db(buildbot_sqlite: Path, tmp_path: Path) -> AsyncIterator[Database]:
    copy = tmp_path / "state.sqlite"
    shutil.copy(buildbot_sqlite, copy)
    db = Database(f"sqlite:///{copy}", clock=FakeClock())
    try:
        yield db
    finally:
        await db.close()


def _sql(db: Database, statement: str) -> list[tuple[object, ...]]:
    assert db.url.database
    conn = sqlite3.connect(db.url.database)
    try:
        with conn:
            return conn.execute(statement).fetchall()
    finally:
        conn.close()


async def test_buildbot_43_is_refused_unless_adopting_then_adopted(buildbot_db: Database) -> None:
    found = await migrate.identify_buildbot(buildbot_db)
    assert found == adopt.BuildbotDatabase("067", "4.3")
    with pytest.raises(DbError, match=r"made by Buildbot 4\.3 \(schema revision '067'\).*adopts"):
        await migrate.upgrade(buildbot_db)
    assert await migrate.current_revision(buildbot_db) == "067"

    # Buildbot 4.3 has no index of running builds: adopted at 0001's tables, then given it
    assert "builds_running_masterid" not in [
        i[1] for i in _sql(buildbot_db, "PRAGMA index_list(builds)")
    ]
    assert await migrate.upgrade(buildbot_db, adopt_buildbot=True) is True
    assert await migrate.current_revision(buildbot_db) == migrate.head_revision()
    assert await migrate.identify_buildbot(buildbot_db) is None
    assert await migrate.upgrade(buildbot_db, adopt_buildbot=True) is False
    # its tables are now exactly ours, the index that buildyard's revisions add included
    async with buildbot_db.transaction() as conn:
        left = await conn.run_sync(
            lambda c: adopt.remaining_differences(c, t.metadata, migrate.compare_options())
        )
    assert left == []
    assert "builds_running_masterid" in [
        i[1] for i in _sql(buildbot_db, "PRAGMA index_list(builds)")
    ]


async def test_an_unknown_buildbot_revision_is_refused_by_name(buildbot_db: Database) -> None:
    _sql(buildbot_db, "UPDATE alembic_version SET version_num = '068'")
    with pytest.raises(DbError, match=r"an unknown Buildbot release \(schema revision '068'\)"):
        await migrate.upgrade(buildbot_db, adopt_buildbot=True)
    assert await migrate.current_revision(buildbot_db) == "068"  # untouched


@pytest.fixture(scope="session")
def buildbot3_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database as stock Buildbot 3.11.9's create-master makes it (revision 064)."""
    basedir = tmp_path_factory.mktemp("buildbot3") / "master"
    subprocess.run(
        [str(buildbot3_venv() / "bin" / "buildbot"), "create-master", "-q", str(basedir)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return basedir / "state.sqlite"


# Buildbot 3.11.9's database as it is (064), and as Buildbot 3.9 left it (062): 3.11's tables
# without the two columns that 3.10 added (063, 064), one of which Buildbot's upgrade fills
@pytest.mark.parametrize(("revision", "release"), [("064", "3.10"), ("062", "3.9")])
async def test_buildbot_3_database_gets_what_later_releases_added_then_is_adopted(
    buildbot3_sqlite: Path, tmp_path: Path, revision: str, release: str
) -> None:
    copy = tmp_path / "state.sqlite"
    shutil.copy(buildbot3_sqlite, copy)
    db = Database(f"sqlite:///{copy}", clock=FakeClock())
    try:
        if revision == "062":
            _sql(db, "ALTER TABLE steps DROP COLUMN locks_acquired_at")
            _sql(db, "ALTER TABLE workers DROP COLUMN pause_reason")
            _sql(db, "UPDATE alembic_version SET version_num = '062'")
        found = await migrate.identify_buildbot(db)
        assert found == adopt.BuildbotDatabase(revision, release)
        assert any("add what Buildbot's releases since then added" in s for s in adopt.plan(found))
        # a build with a step, as Buildbot 3.11 stores them (its tables lack 4.x's columns)
        _sql(
            db,
            "INSERT INTO builds (id, number, builderid, buildrequestid, workerid, masterid,"
            " started_at, complete_at, state_string, results) VALUES (1, 1, 1, 1, 1, 1, 100,"
            " 130, 'finished', 0)",
        )
        _sql(
            db,
            "INSERT INTO steps (id, number, name, buildid, started_at, complete_at,"
            " state_string, results, urls_json, hidden) VALUES (1, 0, 'sh', 1, 105, 110,"
            " 'done', 0, '[]', 0)",
        )
        with pytest.raises(sqlite3.OperationalError, match="locks_duration_s"):
            _sql(db, "SELECT locks_duration_s FROM builds")

        assert await migrate.upgrade(db, adopt_buildbot=True) is True
        assert await migrate.current_revision(db) == migrate.head_revision()
        # as Buildbot 4.3's upgrade fills them: no lock time known, locks taken at the start
        assert _sql(db, "SELECT locks_duration_s FROM builds") == [(0,)]
        # (3.10 and later wrote it themselves: the step above, written without it, keeps NULL)
        filled = 105 if revision == "062" else None
        assert _sql(db, "SELECT locks_acquired_at FROM steps") == [(filled,)]
        assert _sql(db, "SELECT pause_reason FROM workers") == []
        assert _sql(db, "SELECT count(*) FROM codebases") == [(0,)]
        # the key added with buildsets.rebuilt_buildid, as SQLite enforces it
        keys = _sql(db, "PRAGMA foreign_key_list(buildsets)")
        assert ("builds", "rebuilt_buildid", "id", "SET NULL") in [
            (k[2], k[3], k[4], k[6]) for k in keys
        ]
        # SQLite cannot make an added column NOT NULL but with a default: the fill
        info = {row[1]: row for row in _sql(db, "PRAGMA table_info(builds)")}
        assert (info["locks_duration_s"][3], info["locks_duration_s"][4]) == (1, "0")
        # NOT NULL as in 4.3: a build without it is refused
        with pytest.raises(sqlite3.IntegrityError):
            _sql(db, "UPDATE builds SET locks_duration_s = NULL")
        # its tables are now exactly ours (the check adopt makes, run again)
        async with db.transaction() as conn:
            left = await conn.run_sync(
                lambda c: adopt.remaining_differences(c, t.metadata, migrate.compare_options())
            )
        assert left == []
    finally:
        await db.close()


async def test_an_older_schema_with_a_change_no_release_made_is_refused(
    buildbot3_sqlite: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "state.sqlite"
    shutil.copy(buildbot3_sqlite, copy)
    db = Database(f"sqlite:///{copy}", clock=FakeClock())
    try:
        _sql(db, "ALTER TABLE builds ADD COLUMN extra INTEGER")
        with pytest.raises(DbError, match=r"Buildbot 3\.10 .*ways no Buildbot release made") as e:
            await migrate.upgrade(db, adopt_buildbot=True)
        assert "builds.extra" in str(e.value)
        assert await migrate.current_revision(db) == "064"  # untouched
        with pytest.raises(sqlite3.OperationalError):
            _sql(db, "SELECT * FROM codebases")
    finally:
        await db.close()


async def test_an_older_schema_missing_a_foreign_key_is_refused_naming_it(
    buildbot3_sqlite: Path, tmp_path: Path
) -> None:
    # no Buildbot release added a foreign key to a column it did not add: one missing on an
    # existing column is refused before anything changes, named (not added, not a vague diff)
    copy = tmp_path / "state.sqlite"
    shutil.copy(buildbot3_sqlite, copy)
    raw = sqlite3.connect(copy)
    try:
        raw.executescript(
            "PRAGMA foreign_keys = OFF;"
            " CREATE TABLE change_files_new (changeid INTEGER NOT NULL,"
            " filename VARCHAR(1024) NOT NULL);"
            " INSERT INTO change_files_new SELECT * FROM change_files;"
            " DROP TABLE change_files;"
            " ALTER TABLE change_files_new RENAME TO change_files;"
            " CREATE INDEX change_files_changeid ON change_files (changeid);"
        )
    finally:
        raw.close()
    db = Database(f"sqlite:///{copy}", clock=FakeClock())
    try:
        with pytest.raises(DbError, match="ways no Buildbot release made") as e:
            await migrate.upgrade(db, adopt_buildbot=True)
        assert "the foreign key of change_files.changeid to changes.changeid is missing" in str(
            e.value
        )
        assert await migrate.current_revision(db) == "064"  # untouched
        with pytest.raises(sqlite3.OperationalError):
            _sql(db, "SELECT * FROM codebases")
    finally:
        await db.close()


async def test_buildbot_before_alembic_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE migrate_version (repository_id TEXT, version INTEGER)")
        conn.execute("INSERT INTO migrate_version VALUES ('Buildbot', 58)")
        conn.execute("CREATE TABLE builds (id INTEGER PRIMARY KEY)")
    conn.close()
    db = Database(f"sqlite:///{path}", clock=FakeClock())
    try:
        with pytest.raises(
            DbError, match=r"Buildbot older than 3\.4 \(schema revision 'migrate 58'"
        ):
            await migrate.upgrade(db, adopt_buildbot=True)
    finally:
        await db.close()


async def test_a_changed_buildbot_schema_is_refused_with_its_differences(
    buildbot_db: Database,
) -> None:
    _sql(buildbot_db, "ALTER TABLE builds ADD COLUMN extra INTEGER")
    _sql(buildbot_db, "DROP INDEX logs_slug")
    with pytest.raises(DbError, match=r"differ from Buildbot 4\.3's schema in 2 places") as err:
        await migrate.upgrade(buildbot_db, adopt_buildbot=True)
    assert "builds.extra" in str(err.value) and "logs_slug" in str(err.value)
    assert await migrate.current_revision(buildbot_db) == "067"


async def test_scheduler_state_moves_to_buildbots_bare_class_names(tmp_path: Path) -> None:
    """A database buildyard made before 0002 kept a scheduler's state under the qualified class
    name; after it the state is where Buildbot keeps it, and where an adopted database already
    has a value under the bare name, that value wins."""
    db = Database(f"sqlite:///{tmp_path / 'state.sqlite'}", clock=FakeClock())

    def to_0001(conn: sa.Connection) -> None:
        cfg = migrate.alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")

    try:
        async with db.transaction() as conn:
            await conn.run_sync(to_0001)
        nightly = await db.state.get_object_id("n", "buildbot.schedulers.timed.Nightly")
        await db.state.set_state(nightly, "last_build", 100)
        both = await db.state.get_object_id("s", "buildbot.schedulers.basic.SingleBranchScheduler")
        await db.state.set_state(both, "lastCodebases", {"old": 1})
        await db.state.set_state(both, "other", 7)
        bare = await db.state.get_object_id("s", "SingleBranchScheduler")
        await db.state.set_state(bare, "lastCodebases", {"kept": 1})
        dep = await db.state.get_object_id("d", "buildbot.schedulers.basic.Dependent")
        await db.state.set_state(dep, "upstream_bsids", [4])
        www = await db.state.get_object_id("www", "buildbot.www.service.WWWService")
        await db.state.set_state(www, "session_secret", "k")

        assert await migrate.upgrade(db) is True

        moved = await db.state.get_object_id("n", "Nightly")
        assert moved == nightly
        assert await db.state.get_state(moved, "last_build") == 100
        assert await db.state.get_state(bare, "lastCodebases") == {"kept": 1}
        assert await db.state.get_state(bare, "other") == 7
        assert await db.state.get_state(www, "session_secret") == "k"
        # Buildbot keeps a Dependent's state under its service object, the qualified name
        assert Dependent.state_class_name() == "buildbot.schedulers.dependent.Dependent"
        assert Nightly.state_class_name() == "Nightly"
        dependent = await db.state.get_object_id("d", Dependent.state_class_name())
        assert await db.state.get_state(dependent, "upstream_bsids") == [4]
    finally:
        await db.close()


# Buildbot's own compressors, by id, in the stock venv (its optional packages installed by
# scripts/setup.sh): the bytes a Buildbot master stores in logchunks.content
_BUILDBOT_PACKS = """
import base64, json, sys
from buildbot.db.logs import LogsConnectorComponent
data = sys.stdin.buffer.read()
out = {}
for cid, compressor in LogsConnectorComponent.COMPRESSION_BYID.items():
    out[cid] = base64.b64encode(compressor.dumps(data)).decode()
print(json.dumps(out))
"""


_LOG_TEXT = "".join(f"o line {i} {'x' * (i % 50)}\n" for i in range(300))


@pytest.fixture(scope="session")
def buildbot_chunks() -> dict[int, bytes]:
    """:data:`_LOG_TEXT` as one log chunk's content, packed by each of Buildbot's compressors."""
    packed = subprocess.run(
        [str(buildbot_venv() / "bin" / "python"), "-c", _BUILDBOT_PACKS],
        input=_LOG_TEXT.removesuffix("\n").encode(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return {int(k): base64.b64decode(v) for k, v in json.loads(packed.stdout).items()}


async def test_log_chunks_in_every_compression_buildbot_writes_are_read(
    database: Database, buildbot_chunks: dict[int, bytes]
) -> None:
    assert set(buildbot_chunks) == {0, 1, 2, 3, 4, 5}  # raw, gz, bz2, lz4, zstd, br
    assert len({bytes(v) for v in buildbot_chunks.values()}) == 6
    _builderid, _buildid, stepid = await _rows.add_running_step(database)
    for cid, data in sorted(buildbot_chunks.items()):
        logid = await database.logs.add_log(stepid, f"log{cid}", f"log{cid}", "s")
        async with database.transaction() as c:
            await c.execute(
                t.logchunks.insert().values(
                    logid=logid, first_line=0, last_line=299, content=data, compressed=cid
                )
            )
            await c.execute(t.logs.update().where(t.logs.c.id == logid).values(num_lines=300))
        assert await database.logs.get_log_lines(logid, 0, 299) == _LOG_TEXT, cid


# -- through the command line -------------------------------------------------------------------


def _config(db_url: str) -> str:
    """buildyard's sample master.cfg (a valid configuration) on ``db_url``."""
    sample = resources.files("buildyard.cli").joinpath("master.cfg.sample").read_text()
    return sample.replace("@DB_URL@", db_url)


def _buildbot_dir(buildbot_sqlite: Path, tmp_path: Path, db_url: str) -> Path:
    basedir = tmp_path / "master"
    basedir.mkdir()
    shutil.copy(buildbot_sqlite, basedir / "state.sqlite")
    (basedir / "master.cfg").write_text(_config(db_url))
    return basedir


def _revision(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT version_num FROM alembic_version").fetchall()
    finally:
        conn.close()


def test_cli_refuses_an_unknown_buildbot_revision_before_touching_anything(
    buildbot_sqlite: Path, tmp_path: Path
) -> None:
    basedir = _buildbot_dir(buildbot_sqlite, tmp_path, "sqlite:///state.sqlite")
    conn = sqlite3.connect(basedir / "state.sqlite")
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = '068'")
    conn.close()
    result = buildyard("upgrade-master", str(basedir))
    assert result.returncode == 1
    assert "an unknown Buildbot release (schema revision '068')" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in basedir.iterdir()) == ["master.cfg", "state.sqlite"]
    assert _revision(basedir / "state.sqlite") == [("068",)]


def test_cli_keeps_an_earlier_copy_rather_than_overwrite_it(
    buildbot_sqlite: Path, tmp_path: Path
) -> None:
    basedir = _buildbot_dir(buildbot_sqlite, tmp_path, "sqlite:///state.sqlite")
    earlier = basedir / "state.sqlite.buildbot-067.bak"
    earlier.write_bytes(b"an earlier copy")
    result = buildyard("upgrade-master", str(basedir))
    assert result.returncode == 1
    assert f"{earlier} exists" in result.stderr
    assert earlier.read_bytes() == b"an earlier copy"
    assert _revision(basedir / "state.sqlite") == [("067",)]

    earlier.unlink()
    result = buildyard("upgrade-master", str(basedir))
    assert result.returncode == 0, result.stderr
    assert _revision(earlier) == [("067",)]
    assert _revision(basedir / "state.sqlite") == [(migrate.head_revision(),)]


def test_cli_drops_its_copy_when_the_adoption_is_refused(
    buildbot_sqlite: Path, tmp_path: Path
) -> None:
    """The schema check fails inside the upgrade's transaction: the database is left as it
    was, so the copy made before would only stand in the way of the next attempt."""
    basedir = _buildbot_dir(buildbot_sqlite, tmp_path, "sqlite:///state.sqlite")
    conn = sqlite3.connect(basedir / "state.sqlite")
    with conn:
        conn.execute("ALTER TABLE builds ADD COLUMN extra INTEGER")
    conn.close()
    result = buildyard("upgrade-master", str(basedir))
    assert result.returncode == 1
    assert "builds.extra" in result.stderr and "refusing to adopt it" in result.stderr
    assert not (basedir / "state.sqlite.buildbot-067.bak").exists()
    assert _revision(basedir / "state.sqlite") == [("067",)]


def test_cli_names_mysql_and_the_way_off_it(tmp_path: Path) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    (basedir / "master.cfg").write_text(_config("mysql://bb:pw@127.0.0.1/buildbot"))
    result = buildyard("upgrade-master", str(basedir))
    assert result.returncode == 1
    assert "backend 'mysql' is not supported" in result.stderr
    assert "'buildyard copy-db MYSQL_URL DEST_URL'" in result.stderr


async def test_starting_on_a_buildbot_database_names_it_and_the_command(
    buildbot_db: Database,
) -> None:
    """A user moving from Buildbot who runs ``start`` before ``upgrade-master`` is told the
    database is Buildbot's (not that it is at some wrong schema), and it is left as it was."""
    from buildyard.master.master import DatabaseService

    with pytest.raises(DbError) as refused:
        await DatabaseService(buildbot_db).start_service()
    message = str(refused.value)
    assert "was made by Buildbot 4.3 (schema revision '067')" in message
    assert "run 'buildyard upgrade-master' on this master's directory to adopt it" in message
    assert _sql(buildbot_db, "SELECT version_num FROM alembic_version") == [("067",)]


async def test_starting_on_a_buildbot_database_it_cannot_adopt_says_what_instead(
    buildbot_db: Database,
) -> None:
    """A Buildbot release newer than buildyard knows: not advised to run upgrade-master (which
    would refuse it), but told why, as upgrade-master would."""
    from buildyard.master.master import DatabaseService

    _sql(buildbot_db, "UPDATE alembic_version SET version_num = '099'")
    with pytest.raises(DbError) as refused:
        await DatabaseService(buildbot_db).start_service()
    message = str(refused.value)
    assert "an unknown Buildbot release (schema revision '099')" in message
    assert "which buildyard does not know" in message and "refusing to adopt it" in message
    assert "to adopt it (buildyard never adopts" not in message


async def test_starting_on_an_empty_or_older_database_says_which(tmp_path: Path) -> None:
    from buildyard.master.master import DatabaseService

    db = Database(f"sqlite:///{tmp_path / 'state.sqlite'}", clock=FakeClock())
    try:
        with pytest.raises(DbError, match=r"has no buildyard schema .*buildyard upgrade-master"):
            await DatabaseService(db).start_service()
        await migrate.upgrade(db, target="0002")
        with pytest.raises(DbError) as refused:
            await DatabaseService(db).start_service()
        assert (
            f"is at buildyard schema revision '0002', not the current "
            f"'{migrate.head_revision()}'; run 'buildyard upgrade-master'" in str(refused.value)
        )
        await migrate.upgrade(db)
        await DatabaseService(db).start_service()  # current: starts
    finally:
        await db.close()

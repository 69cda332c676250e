"""``buildyard``: create, check, start, stop and reconfigure a master.

Exit codes: 0 success; 1 the action failed (bad config, master did not start, ...); 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import buildyard
from buildyard.cli import sendchange, user
from buildyard.common.pidfile import running_pid, signal_and_wait

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from buildyard.master.db.connector import Database

LOGFILE = "buildyard.log"
PIDFILE = "buildyard.pid"
CONFIG = "master.cfg"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


def _fail(message: str) -> int:
    print(f"buildyard: {message}", file=sys.stderr)
    return 1


def _read_pid(basedir: Path) -> int | None:
    return running_pid(basedir / PIDFILE)


def _print_config_errors(errors: object) -> None:
    from buildyard.common.errors import ConfigErrors

    assert isinstance(errors, ConfigErrors)
    print(f"Configuration errors ({len(errors.errors)}):", file=sys.stderr)
    for err in errors.errors:
        print(f"  {err}", file=sys.stderr)
    for warning in errors.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _load(basedir: Path, configfile: str) -> object | None:
    from buildyard.common.errors import ConfigErrors
    from buildyard.master.config.loader import load_master_config

    try:
        return load_master_config(basedir, configfile)
    except ConfigErrors as errors:
        _print_config_errors(errors)
        return None


# -- create-master -------------------------------------------------------------------------------


def cmd_create_master(args: argparse.Namespace) -> int:
    basedir = Path(args.basedir).resolve()
    basedir.mkdir(parents=True, exist_ok=True)
    sample = resources.files("buildyard.cli").joinpath("master.cfg.sample").read_text()
    (basedir / "master.cfg.sample").write_text(sample.replace("@DB_URL@", args.db))
    from buildyard.master.db.errors import DbError

    try:
        asyncio.run(_upgrade_db(basedir, args.db))
    except DbError as exc:
        return _fail(f"cannot create the database: {exc}")
    if not args.quiet:
        print(f"buildmaster configured in {basedir}")
        print("copy master.cfg.sample to master.cfg, edit it, then: buildyard start", basedir)
    return 0


async def _upgrade_db(basedir: Path, db_url: str, *, adopt_buildbot: bool = False) -> bool:
    from buildyard.common.clock import SystemClock
    from buildyard.master.db import migrate
    from buildyard.master.db.connector import Database

    db = Database(db_url, clock=SystemClock(), basedir=basedir)
    try:
        copy = await _announce_adoption(db) if adopt_buildbot else None
        try:
            changed = await migrate.upgrade(db, adopt_buildbot=adopt_buildbot)
        except BaseException:
            if copy is not None:  # the upgrade rolled back: the database is the copy's twin
                copy.unlink(missing_ok=True)
            raise
        if changed:
            # as Buildbot does: every master gets housekept at its next start
            await db.masters.set_all_masters_active_long_ago()
        return changed
    finally:
        await db.close()


async def _announce_adoption(db: Database) -> Path | None:
    """When ``db`` was made by Buildbot: say what adopting it does and, on SQLite, keep a copy
    of the file first, returned (:class:`DbError` if it cannot be adopted, before anything is
    touched)."""
    from buildyard.master.db import adopt, migrate
    from buildyard.master.db.errors import DbError

    found = await migrate.identify_buildbot(db)
    if found is None:
        return None
    if not found.adoptable:
        raise DbError(adopt.refusal(found))
    for line in adopt.plan(found):
        print(line if line.endswith(":") else f"  - {line}")
    if db.backend == "sqlite" and db.url.database:
        original = Path(db.url.database)
        backup = original.with_name(f"{original.name}.buildbot-{found.revision}.bak")
        if backup.exists():
            raise DbError(
                f"{backup} exists (a copy from an earlier attempt?); move it away and run "
                "upgrade-master again"
            )
        _sqlite_copy(original, backup)
        print(f"  - a copy of the database as Buildbot left it: {backup}")
        return backup
    print("  - no copy is made of a PostgreSQL database: back it up first (pg_dump)")
    return None


def _sqlite_copy(original: Path, backup: Path) -> None:
    """A consistent copy of an SQLite file (with what its write-ahead log holds)."""
    import sqlite3

    source = sqlite3.connect(f"file:{original}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(backup)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


# -- upgrade-master, checkconfig -----------------------------------------------------------------


def cmd_upgrade_master(args: argparse.Namespace) -> int:
    basedir = Path(args.basedir).resolve()
    _enter(basedir)
    pid = _read_pid(basedir)
    if pid is not None:
        return _fail(f"the master in {basedir} is running (pid {pid}); stop it before upgrading")
    config = _load(basedir, args.config)
    if config is None:
        return 1
    from buildyard.master.db.errors import DbError

    try:
        changed = asyncio.run(
            _upgrade_db(basedir, config.db_url, adopt_buildbot=True)  # type: ignore[attr-defined]
        )
    except DbError as exc:
        return _fail(f"upgrade failed: {exc}")
    print("upgrade complete" if changed else "the database was already up to date")
    return 0


def _print_warnings(config: object) -> None:
    for warning in config.warnings:  # type: ignore[attr-defined]
        print(f"warning: {warning}", file=sys.stderr)


def cmd_checkconfig(args: argparse.Namespace) -> int:
    basedir = Path(args.basedir).resolve()
    configfile = args.config
    if basedir.is_file():  # Buildbot's form: checkconfig path/to/master.cfg
        basedir, configfile = basedir.parent, basedir.name
    elif not basedir.exists():
        return _fail(f"{basedir} does not exist (give the master's directory or its config file)")
    config = _load(basedir, configfile)
    if config is None:
        return 1
    _print_warnings(config)
    if not args.quiet:
        print("Config file is good!")
    return 0


# -- copy-db, cleanupdb -------------------------------------------------------------------------


def _say(quiet: bool) -> Callable[[str], None]:
    def say(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    return say


def _looks_like_url(text: str | None) -> bool:
    return text is not None and "://" in text


def cmd_copy_db(args: argparse.Namespace) -> int:
    from buildyard.master.db.copy import is_mysql, same_database
    from buildyard.master.db.engine import normalize_url
    from buildyard.master.db.errors import DbError

    by_url = _looks_like_url(args.basedir)
    if by_url:
        # copy-db SOURCE_URL DEST_URL: from a database named by its URL, no master directory
        # (how a Buildbot database on MySQL is copied: its master.cfg does not load here)
        source_url, dest_url = args.destination_url, args.basedir
        basedir = Path.cwd()
    else:
        dest_url = args.destination_url
        basedir = Path(args.basedir).resolve()
        if not basedir.is_dir():
            return _fail(f"{basedir} is not a master directory")
        pid = _read_pid(basedir)
        if pid is not None:
            return _fail(f"the master in {basedir} is running (pid {pid}); stop it before copying")
        config = _load(basedir, args.config)
        if config is None:
            return 1
        source_url = config.db_url  # type: ignore[attr-defined]
    mysql = is_mysql(source_url)
    try:
        dest = normalize_url(dest_url, basedir=basedir)
        source = None if mysql else normalize_url(source_url, basedir=basedir)
    except DbError as exc:
        return _fail(f"copy-db: {exc}")
    shown = dest.render_as_string(hide_password=True)
    if not dest.database:
        return _fail(
            f"copy-db: the destination {shown!r} names no database "
            "(sqlite:// is a throwaway database)"
        )
    if source is not None and same_database(source, dest):
        # (--overwrite would empty the source)
        which = "the source database" if by_url else "the master's own database"
        return _fail(f"copy-db: the destination {shown!r} is {which}")
    say = _say(args.quiet)
    shown_source = (
        _url_hidden(source_url) if source is None else source.render_as_string(hide_password=True)
    )
    say(f"Copying database ({shown_source}) to ({shown})")
    try:
        asyncio.run(
            _copy_db(
                basedir,
                source_url,
                dest_url,
                overwrite=args.overwrite,
                ignore_fk_error_rows=args.ignore_fk_error_rows,
                say=say,
            )
        )
    except DbError as exc:
        return _fail(f"copy-db: {exc}")
    say("Copy complete")
    return 0


async def _prepare_destination(
    dst: Database, wanted: str, *, mysql: bool, overwrite: bool, say: Callable[[str], None]
) -> dict[str, int]:
    """Give an empty destination the schema at revision ``wanted``; refuse one at another
    revision, or with rows (unless ``overwrite``). Its tables holding rows, with how many."""
    from buildyard.master.db import copy, migrate
    from buildyard.master.db.errors import DbError

    revision = await migrate.current_revision(dst)
    if revision is None:
        say("creating the schema at the destination")
        # refuses a database with tables but no revision
        await migrate.upgrade(dst, target=None if wanted == migrate.head_revision() else wanted)
    elif revision != wanted:
        why = (
            "a copy from Buildbot's MySQL fills an empty database at Buildbot 4.3's "
            f"schema ({wanted!r}), then upgrades it"
            if mysql
            else f"the copy's is {wanted!r}"
        )
        raise DbError(
            f"the destination is at schema revision {revision!r} ({why}): copy into an "
            "empty database"
        )
    async with dst.reading() as conn:
        filled = await copy.non_empty_tables(conn)
    if filled and not overwrite:
        some = ", ".join(f"{name} ({n} rows)" for name, n in list(filled.items())[:5])
        raise DbError(
            f"the destination is not empty: {some}; copy into an empty database, or give "
            "--overwrite to delete its rows first"
        )
    return filled


async def _mysql_source(source_url: str) -> AsyncEngine:
    """The engine of a MySQL source, checked to be a Buildbot 4.3 database (DbError if not)."""
    import sqlalchemy as sa

    from buildyard.master.db import copy
    from buildyard.master.db.errors import DbError

    engine = copy.mysql_source(source_url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(copy.check_buildbot_source)
    except (OSError, sa.exc.DBAPIError) as exc:
        await engine.dispose()
        raise DbError(f"cannot read the MySQL database {_url_hidden(source_url)}: {exc}") from exc
    except DbError:
        await engine.dispose()
        raise
    return engine


def _url_hidden(db_url: str) -> str:
    """``db_url`` with its password hidden."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(db_url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(not a database URL)"


async def _copy_db(
    basedir: Path,
    source_url: str,
    dest_url: str,
    *,
    overwrite: bool,
    ignore_fk_error_rows: bool,
    say: Callable[[str], None],
) -> None:
    import sqlalchemy as sa

    from buildyard.common.clock import SystemClock
    from buildyard.master.db import adopt, copy, migrate
    from buildyard.master.db.connector import Database
    from buildyard.master.db.errors import DbError

    clock = SystemClock()
    mysql = copy.is_mysql(source_url)
    src: Database | None = None
    src_engine: AsyncEngine | None = None
    dst: Database | None = None
    try:
        if mysql:
            # a Buildbot 4.3 database, read only: its tables are our revision 0001's, so the
            # destination gets that revision, the rows, then the later revisions
            src_engine = await _mysql_source(source_url)
            wanted = adopt.ADOPTED_AS
        else:
            src = Database(source_url, clock=clock, basedir=basedir)
            src_engine = src.engine
            if not await migrate.is_current(src):
                raise DbError(
                    "the master's database is not at this buildyard's schema: run "
                    f"'buildyard upgrade-master {basedir}' first"
                )
            wanted = migrate.head_revision()
        dst = Database(dest_url, clock=clock, basedir=basedir)
        filled = await _prepare_destination(dst, wanted, mysql=mysql, overwrite=overwrite, say=say)
        try:
            async with copy.snapshot(src_engine) as source, dst.transaction() as dest:
                if filled:
                    say(f"deleting the destination's rows ({sum(filled.values())})")
                    await copy.empty_all(dest)
                report = await copy.copy_rows(
                    source, dest, ignore_fk_error_rows=ignore_fk_error_rows, say=say
                )
        except (OSError, sa.exc.DBAPIError) as exc:
            if not mysql:
                raise
            raise DbError(f"copying from the MySQL database failed: {exc}") from exc
        for name, n in report.skipped.items():
            say(f"left out {n} rows of {name} (their parent row is missing)")
        if mysql:
            say(f"bringing the copy from Buildbot 4.3's schema to {migrate.head_revision()!r}")
            await migrate.upgrade(dst)
    finally:
        if src is not None:
            await src.close()
        elif src_engine is not None:
            await src_engine.dispose()
        if dst is not None:
            await dst.close()


def _janitor_horizons(config: object) -> tuple[float | None, float | None]:
    """The log and build-data horizons (seconds) of the config's util.JanitorConfigurator,
    None where it gives none (or there is no janitor)."""
    import datetime

    from buildyard.master.janitor import JANITOR_NAME, BuildDataJanitor, LogChunksJanitor

    logs = data = None
    for builder in config.builders:  # type: ignore[attr-defined]
        if builder.name != JANITOR_NAME:
            continue
        for step in getattr(builder.factory, "steps", ()):
            if isinstance(step, LogChunksJanitor) and isinstance(
                step.logHorizon, datetime.timedelta
            ):
                logs = step.logHorizon.total_seconds()
            if isinstance(step, BuildDataJanitor) and isinstance(
                step.build_data_horizon, datetime.timedelta
            ):
                data = step.build_data_horizon.total_seconds()
    return logs, data


def cmd_cleanupdb(args: argparse.Namespace) -> int:
    from buildyard.master.db.errors import DbError

    basedir = Path(args.basedir).resolve()
    if not basedir.is_dir():
        return _fail(f"{basedir} is not a master directory")
    pid = _read_pid(basedir)
    if pid is not None:
        return _fail(f"the master in {basedir} is running (pid {pid}); stop it before cleanupdb")
    config = _load(basedir, args.config)
    if config is None:
        return 1
    say = _say(args.quiet)
    try:
        asyncio.run(_cleanup_db(basedir, config, force=args.force, say=say))
    except DbError as exc:
        return _fail(f"cleanupdb: {exc}")
    say("cleanup complete")
    return 0


async def _cleanup_db(
    basedir: Path, config: object, *, force: bool, say: Callable[[str], None]
) -> None:
    from buildyard.common.clock import SystemClock
    from buildyard.master.db import migrate
    from buildyard.master.db.connector import Database
    from buildyard.master.db.errors import DbError

    db_url: str = config.db_url  # type: ignore[attr-defined]
    method: str = config.log_compression_method  # type: ignore[attr-defined]
    clock = SystemClock()
    db = Database(db_url, clock=clock, basedir=basedir)
    try:
        say(f"cleaning database ({db.url.render_as_string(hide_password=True)})")
        if not await migrate.is_current(db):
            raise DbError(
                "the database is not at this buildyard's schema: run "
                f"'buildyard upgrade-master {basedir}' first"
            )
        log_horizon, data_horizon = _janitor_horizons(config)
        if log_horizon is not None:
            chunks = await db.logs.delete_old_logs(int(clock.now() - log_horizon))
            say(f"deleted {chunks} logchunks older than the janitor's logHorizon")
        if data_horizon is not None:
            rows = await db.builds.delete_old_build_data(int(clock.now() - data_horizon))
            say(f"deleted {rows} build data rows older than the janitor's build_data_horizon")
        total = await db.logs.count_logs()
        say(f"compressing {total} logs with {method!r}" + (" (force)" if force else ""))
        done = percent = saved = 0
        after = 0
        while ids := await db.logs.log_ids(after=after):
            for logid in ids:
                saved += await db.logs.compress_log(logid, method, force=force)
                done += 1
                if total and int(done * 100 / total) != percent:
                    percent = int(done * 100 / total)
                    say(f" {percent}%  {saved} saved")
                    saved = 0
            after = ids[-1]
        await _vacuum(db, say)
    finally:
        await db.close()


async def _vacuum(db: Database, say: Callable[[str], None]) -> None:
    """Give the space freed back: VACUUM on SQLite (then the write-ahead log is emptied into
    the file), VACUUM FULL of logchunks on PostgreSQL
    (both outside a transaction)."""
    import sqlalchemy as sa

    statement = "VACUUM" if db.backend == "sqlite" else "VACUUM FULL logchunks"
    say(f"executing vacuum operation '{statement}'...")
    if db.backend == "sqlite":
        import sqlite3

        await db.engine.dispose()  # no connection of ours may hold the file open
        path = db.url.database
        assert path
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute(statement)
            # the compacted pages are in the write-ahead log until it is copied back
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return
    async with db.engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.execute(sa.text(statement))


# -- start, stop, restart, reconfig --------------------------------------------------------------


def _run_master(basedir: Path, configfile: str) -> int:
    # start-up (the master's imports, loading master.cfg, starting a service per builder and
    # worker) makes many long-lived objects and frees few: the cyclic collector would walk them
    # again and again while they are made (half the CPU of a cold start with 10,000 builders).
    # It stays off until the master has started: BuildMaster.run then collects once and
    # freezes what lives on (gc.freeze)
    gc.disable()
    try:
        return _load_and_run(basedir, configfile)
    finally:
        gc.enable()


def _load_and_run(basedir: Path, configfile: str) -> int:
    from buildyard.common.awaitables import reactor_loop
    from buildyard.common.errors import ConfigErrors
    from buildyard.master.config.loader import load_master_config
    from buildyard.master.db.errors import DbError
    from buildyard.master.master import BuildMaster

    try:
        config = load_master_config(basedir, configfile)
    except ConfigErrors as errors:
        _print_config_errors(errors)
        return 1
    _print_warnings(config)

    async def main() -> int:
        pidfile = basedir / PIDFILE
        pidfile.write_text(f"{os.getpid()}\n")
        try:
            master = BuildMaster(basedir, config=config)
            return await master.run()
        except ConfigErrors as errors:  # what only starting finds: a worker's secret password
            _print_config_errors(errors)
            return 1
        except DbError as exc:
            return _fail(str(exc))
        except OSError as exc:  # a port that cannot be had
            return _fail(f"cannot listen: {exc}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                pidfile.unlink()

    # Twisted-style code in master.cfg (buildyard[twisted]) had Twisted's reactor installed on
    # a loop made while it loaded: the master runs that loop
    loop = reactor_loop()
    with asyncio.Runner(loop_factory=None if loop is None else lambda: loop) as runner:
        return runner.run(main())


def _tail_until(
    logfile: Path,
    offset: int,
    words: Sequence[str],
    *,
    alive: Callable[[], bool],
    timeout: float,
) -> str | None:
    """Wait until a new line of ``logfile`` contains one of ``words``; return that word, or
    None if the time runs out or the master is no longer ``alive()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError), logfile.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
            for word in words:
                if word in text:
                    return word
        if not alive():
            return None
        time.sleep(0.1)
    return None


def _log_offset(logfile: Path) -> int:
    try:
        return logfile.stat().st_size
    except FileNotFoundError:
        return 0


def _enter(basedir: Path) -> None:
    """Work in the master's directory, as Buildbot's start and upgrade-master do: master.cfg
    files open their own files by relative paths (``open("credentials.ini")``)."""
    if basedir.is_dir():
        os.chdir(basedir)


def cmd_start(args: argparse.Namespace) -> int:
    basedir = Path(args.basedir).resolve()
    _enter(basedir)
    if not (basedir / args.config).exists():
        return _fail(
            f"{basedir / args.config} does not exist (create-master writes master.cfg.sample)"
        )
    pid = _read_pid(basedir)
    if pid is not None:
        return _fail(f"a master is already running in {basedir} (pid {pid})")
    if args.nodaemon:
        return _run_master(basedir, args.config)
    config = _load(basedir, args.config)
    if config is None:
        return 1
    _print_warnings(config)  # the master logs them too, but a user starting it reads this
    logfile = basedir / LOGFILE
    offset = _log_offset(logfile)
    with logfile.open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "buildyard.cli.main",
                "start",
                "--nodaemon",
                "--config",
                args.config,
                str(basedir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=basedir,
            start_new_session=True,
        )
    found = _tail_until(
        logfile,
        offset,
        ["master_started"],
        alive=lambda: proc.poll() is None,
        timeout=START_TIMEOUT,
    )
    if found is None or proc.poll() is not None:
        if proc.poll() is None:
            proc.terminate()
        tail = logfile.read_text(errors="replace")[offset:][-3000:]
        return _fail(f"the master did not start; the end of {logfile}:\n{tail}")
    text = logfile.read_text(errors="replace")[offset:]
    print(f"buildyard master started in {basedir} (pid {proc.pid}); log: {logfile}")
    for line in text.splitlines():
        if "www_listening" in line:
            url = line.split("url=")[-1].strip()
            print(f"web server and REST API: {url}  (e.g. {url}api/v2/masters)")
    return 0


def _stop(basedir: Path, *, clean: bool) -> int:
    pid = _read_pid(basedir)
    if pid is None:
        print(f"no master is running in {basedir}")
        return 0
    if clean:  # the running builds end first, however long they take (as Buildbot's)
        print(f"waiting for the running builds of the master in {basedir} to end", flush=True)
    timeout = float("inf") if clean else STOP_TIMEOUT
    if signal_and_wait(pid, signal.SIGUSR1 if clean else signal.SIGTERM, timeout=timeout):
        print(f"buildyard master in {basedir} stopped")
        return 0
    return _fail(f"the master (pid {pid}) did not stop within {STOP_TIMEOUT:.0f}s")


def cmd_stop(args: argparse.Namespace) -> int:
    return _stop(Path(args.basedir).resolve(), clean=args.clean)


def cmd_restart(args: argparse.Namespace) -> int:
    code = _stop(Path(args.basedir).resolve(), clean=args.clean)
    if code != 0:
        return code
    args.nodaemon = False
    return cmd_start(args)


def cmd_reconfig(args: argparse.Namespace) -> int:
    basedir = Path(args.basedir).resolve()
    pid = _read_pid(basedir)
    if pid is None:
        return _fail(f"no master is running in {basedir}")
    logfile = basedir / LOGFILE
    offset = _log_offset(logfile)
    os.kill(pid, signal.SIGHUP)
    found = _tail_until(
        logfile,
        offset,
        ["reconfig_done", "reconfig_failed"],
        alive=lambda: _read_pid(basedir) == pid,
        timeout=START_TIMEOUT,
    )
    text = logfile.read_text(errors="replace")[offset:]
    for line in text.splitlines():
        if any(w in line for w in ("config_error", "reconfig_done", "reconfig_failed")):
            print(line)
    if found == "reconfig_done":
        return 0
    if found is None:
        if _read_pid(basedir) != pid:
            return _fail(f"the master stopped during the reconfig; see {logfile}")
        return _fail(f"no answer to the reconfig within {START_TIMEOUT:.0f}s; see {logfile}")
    return 1


# -- reports -------------------------------------------------------------------------------------


def cmd_reports(args: argparse.Namespace) -> int:
    """List the reports given up after their retries (kept in the database, tried again when
    their reporter starts), or drop some or all of them (the master stopped)."""
    from buildyard.master.db.errors import DbError

    basedir = Path(args.basedir).resolve()
    if not basedir.is_dir():
        return _fail(f"{basedir} is not a master directory")
    dropping = bool(args.drop) or args.drop_all
    if dropping:
        pid = _read_pid(basedir)
        if pid is not None:
            return _fail(
                f"the master in {basedir} is running (pid {pid}); stop it before dropping "
                "reports (it may be keeping one at this moment)"
            )
    config = _load(basedir, args.config)
    if config is None:
        return 1
    try:
        return asyncio.run(_reports(basedir, config, args))
    except DbError as exc:
        return _fail(f"reports: {exc}")


async def _reports(basedir: Path, config: object, args: argparse.Namespace) -> int:
    from buildyard.common.clock import SystemClock
    from buildyard.master.db.connector import Database
    from buildyard.master.reporters.base import GIVEN_UP_STATE

    db = Database(config.db_url, clock=SystemClock(), basedir=basedir)  # type: ignore[attr-defined]
    wanted = set(args.drop or ())
    found: set[int] = set()
    try:
        total = 0
        for objectid, name, _class in await db.state.find_objects("buildyard.reporters."):
            if args.reporter and name != args.reporter:
                continue
            kept = await db.state.get_state(objectid, GIVEN_UP_STATE, [])
            if not kept:
                continue
            if args.drop_all or wanted:
                left = [e for e in kept if not args.drop_all and int(e.get("id", 0)) not in wanted]
                gone = [e for e in kept if e not in left]
                found.update(int(e.get("id", 0)) for e in gone)
                if gone:
                    await db.state.set_state(objectid, GIVEN_UP_STATE, left)
                    print(f"{name}: dropped {len(gone)} report(s)")
                continue
            for entry in kept:
                total += 1
                body = entry.get("body") or {}
                what = " ".join(
                    f"{k}={body[k]}" for k in ("buildid", "buildrequestid", "bsid") if k in body
                )
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(entry.get("at", 0))))
                print(
                    f"{name} #{entry.get('id')} {'/'.join(entry.get('key') or ())} {what} "
                    f"given up {when} UTC: {entry.get('error')}"
                )
        if not (args.drop_all or wanted):
            print(f"{total} report(s) given up" if total else "no report given up")
        elif wanted - found:
            missing = ", ".join(f"#{i}" for i in sorted(wanted - found))
            return _fail(
                f"no given-up report {missing}" + (f" of {args.reporter}" if args.reporter else "")
            )
    finally:
        await db.close()
    return 0


# -- parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="buildyard", description="Create, check, start, stop and reconfigure a master."
    )
    parser.add_argument("--version", action="version", version=f"buildyard {buildyard.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, func: object, help_text: str, *, config: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "basedir", nargs="?", default=".", help="the master's directory (default: .)"
        )
        if config:
            p.add_argument(
                "--config", default=CONFIG, help="config file name in basedir (default: master.cfg)"
            )
        p.set_defaults(func=func)
        return p

    p = add(
        "create-master",
        cmd_create_master,
        "create a master directory: master.cfg.sample and the database",
        config=False,
    )
    p.add_argument(
        "--db",
        default="sqlite:///state.sqlite",
        help="database URL (default: sqlite:///state.sqlite)",
    )
    p.add_argument("-q", "--quiet", action="store_true")
    add(
        "upgrade-master",
        cmd_upgrade_master,
        "bring the database schema up to date (adopts a database of Buildbot 3.4 to 4.3)",
    )
    p = add(
        "checkconfig",
        cmd_checkconfig,
        "check master.cfg and report every mistake with its line; basedir may also be the "
        "config file itself",
    )
    p.add_argument("-q", "--quiet", action="store_true")
    p = add("start", cmd_start, "start the master (in the background unless --nodaemon)")
    p.add_argument(
        "--nodaemon", action="store_true", help="run in the foreground, logging to stderr"
    )
    p = add("stop", cmd_stop, "stop the master", config=False)
    p.add_argument("--clean", action="store_true", help="wait for running builds to finish")
    p = add("restart", cmd_restart, "stop, then start the master")
    p.add_argument("--clean", action="store_true", help="wait for running builds to finish")
    add("reconfig", cmd_reconfig, "re-read master.cfg in the running master (SIGHUP)", config=False)
    text = (
        "copy the master's database to another database (SQLite or PostgreSQL); "
        "'copy-db SOURCE_URL DEST_URL' copies from a database URL instead, e.g. Buildbot's MySQL"
    )
    p = sub.add_parser("copy-db", help=text, description=text)
    p.add_argument(
        "destination_url",
        help="the database to copy to, e.g. postgresql://u@h/db; or, when a URL follows it, "
        "the SOURCE_URL to copy from",
    )
    p.add_argument(
        "basedir",
        nargs="?",
        default=".",
        help="the master's directory (default: .); or, after a SOURCE_URL, the destination URL",
    )
    p.add_argument(
        "--config", default=CONFIG, help="config file name in basedir (default: master.cfg)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.add_argument(
        "--ignore-fk-error-rows",
        action="store_true",
        help="leave out rows whose foreign key points to a missing row (instead of failing)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the destination's rows first when it is not empty (buildyard's own)",
    )
    p.set_defaults(func=cmd_copy_db)
    p = add(
        "cleanupdb",
        cmd_cleanupdb,
        "apply the janitor's horizons and the log compression to the stored logs, then "
        "compact the database",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="compress again the chunks compressed another way (after changing "
        "logCompressionMethod)",
    )
    p = add(
        "reports",
        cmd_reports,
        "list the reports given up after their retries (kept and tried again when their "
        "reporter starts), or drop them",
    )
    p.add_argument("--reporter", help="only this reporter's (its name, as the list shows it)")
    p.add_argument(
        "--drop", type=int, action="append", metavar="N", help="drop report #N (repeatable)"
    )
    p.add_argument("--drop-all", action="store_true", help="drop every listed report")
    text = "manage users through a master's CommandlineUserManager (as buildbot user)"
    p = sub.add_parser("user", help=text, description=text)
    user.add_arguments(p)
    p.set_defaults(func=user.cmd_user)
    text = "send a change to a master's PBChangeSource (as buildbot sendchange)"
    p = sub.add_parser("sendchange", help=text, description=text)
    sendchange.add_arguments(p)
    p.set_defaults(func=sendchange.cmd_sendchange)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from buildyard.common.logging import configure

    args = build_parser().parse_args(argv)
    configure()
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

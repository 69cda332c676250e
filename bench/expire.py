"""The expiry of a silent master with a long history, side by side with stock Buildbot 4.3.0.

A master that stops checking in is expired by the others (and by every master as it starts,
for masters silent longer than ``expireAfter``): its unfinished builds are finished RETRY, its
claims on incomplete requests are released. Both systems do it at every start, for every
master silent that long (already expired ones too, in case an earlier cleanup was cut short).
What it costs should depend on the silent master's running builds, not on how many builds it
ran in its life.

For each system, two databases on SQLite, filled in bulk through the database's own tables
(reflected, as ``bench/scale.py`` fills them):

* **history**: a silent master S that ran ``--builds`` finished builds (with their buildsets,
  requests, S's claims on them, steps and logs) and has ``--running`` builds still running,
  each with a running step, an open log and S's claim on its incomplete request;
* **baseline**: the same rows, but the finished builds (and their claims) belong to a master
  that is not silent, so S has only its running builds.

The master is started ``--rounds`` times on each database, alternating, and the process's CPU
time until it says it is running is read from ``/proc`` (wall time too); *history - baseline*
is what the silent master's history costs a start. After the runs, the database says whether
S's running builds were finished (they must be, on both systems).

buildyard's cleanup is also timed alone (CPU of the process, median of ``--rounds``, at least
3): the same call the start made, on the same databases afterwards, in a process of its own.
Buildbot's runs inside its master only, so it has the start's figures.

``--also-src DIR`` adds a run of buildyard from another source tree (e.g. the code before a
change), on a database made by that tree's own ``create-master``.

    .venv/bin/python bench/expire.py                             # docs/performance.md
    .venv/bin/python bench/expire.py --only buildyard --builds 200 --rounds 1   # the smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

# scale.py's master.cfg, commands and bulk fill: the same masters and history as that bench
from scale import CONFIG, LOG, MARKER, _command, _wait_for, fill, load, process_tree

from buildyard.testing.processes import end_popen

SYSTEMS = ("buildyard", "buildbot")
SILENT = "silent-host:/srv/silent"
LIVE = "live-host:/srv/live"
# a last_active far in the future: never silent
NEVER_SILENT = 2**31 - 1
T_RUNNING = 1_750_000_000  # after the fill's finished builds


def _env(src: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    return env


def create(system: str, basedir: Path, src: str | None) -> None:
    env = _env(src)
    subprocess.run([*_command(system), "create-master", "-q", str(basedir)], check=True, env=env)
    (basedir / "master.cfg").write_text(
        CONFIG.format(package=system, builders=5, workers=2, www="")
    )


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of ``pid`` and its descendants, in seconds."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def start(system: str, basedir: Path, src: str | None) -> tuple[float, float]:
    """Start the master, stop it once it says it is running: (wall, CPU) seconds until then."""
    log = basedir / LOG[system]
    log.unlink(missing_ok=True)
    with (basedir / "stdout.log").open("wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [*_command(system), "start", "--nodaemon", str(basedir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(src),
        )
    try:
        wall = _wait_for(log, MARKER[system], proc, 1800) - t0
        cpu = cpu_seconds(proc.pid)
    finally:
        end_popen(proc)
    return wall, cpu


def silence(db_path: Path, *, running: int, history: bool) -> int:
    """Add the silent master S (and the live master L), give S ``running`` running builds and,
    with ``history``, every finished build and a claim on each finished request; otherwise L
    gets those. Returns S's id."""
    engine = sa.create_engine(f"sqlite:///{db_path}")
    md = sa.MetaData()
    md.reflect(engine)
    t = md.tables

    def keep(name: str, row: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in row.items() if k in t[name].c}

    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA synchronous=OFF")
        ids: dict[str, int] = {}
        for name, active, last in ((SILENT, 1, 0), (LIVE, 0, NEVER_SILENT)):
            key = conn.execute(
                t["masters"]
                .insert()
                .values(
                    name=name,
                    name_hash=hashlib.sha1(name.encode()).hexdigest(),
                    active=active,
                    last_active=last,
                )
            ).inserted_primary_key
            assert key is not None
            ids[name] = int(key[0])
        s, owner = ids[SILENT], ids[SILENT] if history else ids[LIVE]
        conn.execute(t["builds"].update().values(masterid=owner))
        conn.execute(
            sa.text(
                "INSERT INTO buildrequest_claims (brid, masterid, claimed_at) "
                "SELECT id, :owner, submitted_at FROM buildrequests"
            ),
            {"owner": owner},
        )
        builderid = conn.execute(sa.text("SELECT min(id) FROM builders")).scalar_one()
        workerid = conn.execute(sa.text("SELECT min(id) FROM workers")).scalar_one()
        top = conn.execute(sa.text("SELECT max(id) FROM builds")).scalar_one() or 0
        number = conn.execute(
            sa.text("SELECT coalesce(max(number), 0) FROM builds WHERE builderid = :b"),
            {"b": builderid},
        ).scalar_one()
        for k in range(1, running + 1):
            i, at = top + k, T_RUNNING + k
            conn.execute(
                t["buildsets"]
                .insert()
                .values(
                    keep(
                        "buildsets",
                        {
                            "id": i,
                            "reason": "running",
                            "submitted_at": at,
                            "complete": 0,
                            "results": -1,
                        },
                    )
                )
            )
            conn.execute(
                t["buildrequests"]
                .insert()
                .values(
                    keep(
                        "buildrequests",
                        {
                            "id": i,
                            "buildsetid": i,
                            "builderid": builderid,
                            "priority": 0,
                            "complete": 0,
                            "results": -1,
                            "submitted_at": at,
                            "waited_for": 0,
                        },
                    )
                )
            )
            conn.execute(
                t["buildrequest_claims"].insert().values(brid=i, masterid=s, claimed_at=at)
            )
            conn.execute(
                t["builds"]
                .insert()
                .values(
                    keep(
                        "builds",
                        {
                            "id": i,
                            "number": number + k,
                            "builderid": builderid,
                            "buildrequestid": i,
                            "workerid": workerid,
                            "masterid": s,
                            "started_at": at,
                            "locks_duration_s": 0,
                            "state_string": "building",
                        },
                    )
                )
            )
            conn.execute(
                t["steps"]
                .insert()
                .values(
                    keep(
                        "steps",
                        {
                            "id": i,
                            "number": 0,
                            "name": "shell",
                            "buildid": i,
                            "started_at": at,
                            "locks_acquired_at": at,
                            "state_string": "running",
                            "urls_json": "[]",
                            "hidden": 0,
                        },
                    )
                )
            )
            conn.execute(
                t["logs"]
                .insert()
                .values(
                    keep(
                        "logs",
                        {
                            "id": i,
                            "name": "stdio",
                            "slug": "stdio",
                            "stepid": i,
                            "complete": 0,
                            "num_lines": 0,
                            "type": "s",
                        },
                    )
                )
            )
    engine.dispose()
    return int(s)


def finished_running(db_path: Path, masterid: int) -> tuple[int, int]:
    """S's builds: (still running, finished RETRY since the fill)."""
    engine = sa.create_engine(f"sqlite:///{db_path}")
    with engine.connect() as conn:
        open_ = conn.execute(
            sa.text("SELECT count(*) FROM builds WHERE masterid = :m AND complete_at IS NULL"),
            {"m": masterid},
        ).scalar_one()
        retried = conn.execute(
            sa.text(
                "SELECT count(*) FROM builds WHERE masterid = :m AND started_at >= :t "  # RETRY: 5
                "AND complete_at IS NOT NULL AND results = 5"
            ),
            {"m": masterid, "t": T_RUNNING},
        ).scalar_one()
    engine.dispose()
    return int(open_), int(retried)


_CLEANUP = """
import asyncio, statistics, sys, time
from buildyard.master.db.connector import Database
from buildyard.testing.clock import FakeClock

async def main(path, masterid, repeats):
    db = Database(f"sqlite:///{path}", clock=FakeClock())
    took = []
    try:
        for _ in range(repeats):
            t0 = time.process_time()
            async with db.transaction() as conn:
                await db.masters.deactivation_cleanup(masterid, conn=conn)
            took.append(time.process_time() - t0)
    finally:
        await db.close()
    print(statistics.median(took))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def cleanup_seconds(db_path: Path, masterid: int, src: str | None, repeats: int) -> float:
    """buildyard's cleanup of the (already expired) silent master alone, in a process of the
    given source tree: the median CPU seconds of ``repeats`` runs. It finds what it found at
    the start, less the builds that start finished: the same rows are read."""
    out = subprocess.run(
        [sys.executable, "-c", _CLEANUP, str(db_path), str(masterid), str(repeats)],
        check=True,
        capture_output=True,
        text=True,
        env=_env(src),
    ).stdout
    return float(out.split()[-1])


def report(
    args: argparse.Namespace,
    runs: list[tuple[str, str, str | None]],
    results: dict[tuple[str, str], list[tuple[float, float]]],
    masters: dict[tuple[str, str], tuple[Path, int]],
    cleanup: dict[tuple[str, str], float],
) -> None:
    print()
    print(
        "| system | CPU to start, history | baseline | history - baseline | wall, history |"
        " baseline | running builds finished |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, _system, _src in runs:
        hist, base = results[label, "history"], results[label, "baseline"]
        cpu_h = statistics.median(c for _, c in hist)
        cpu_b = statistics.median(c for _, c in base)
        wall_h = statistics.median(w for w, _ in hist)
        wall_b = statistics.median(w for w, _ in base)
        basedir, sid = masters[label, "history"]
        open_, retried = finished_running(basedir / "state.sqlite", sid)
        print(
            f"| {label} | {cpu_h:.2f} s | {cpu_b:.2f} s | {cpu_h - cpu_b:+.2f} s "
            f"| {wall_h:.2f} s | {wall_b:.2f} s | {retried} of {args.running}"
            f"{f' ({open_} still open)' if open_ else ''} |"
        )
    if cleanup:
        print()
        print("| system | cleanup alone, CPU, history | baseline | history/baseline |")
        print("|---|---|---|---|")
        for label, system, _src in runs:
            if system != "buildyard":
                continue
            h, b = cleanup[label, "history"], cleanup[label, "baseline"]
            ratio = f"{h / b:.1f}" if b > 0 else "-"
            print(f"| {label} | {h * 1000:.1f} ms | {b * 1000:.1f} ms | {ratio} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=100_000)
    parser.add_argument("--running", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=SYSTEMS, help="run one system (no Buildbot needed)")
    parser.add_argument(
        "--also-src", help="also run buildyard from this source tree (its src/ directory)"
    )
    args = parser.parse_args(argv)
    # (label, system, PYTHONPATH)
    runs: list[tuple[str, str, str | None]] = [
        (s, s, None) for s in (SYSTEMS if args.only is None else (args.only,))
    ]
    if args.also_src:
        runs.insert(1, (f"buildyard ({args.also_src})", "buildyard", args.also_src))
    print(f"load before: {load()}")
    print(f"silent master: {args.builds:,} finished builds, {args.running} running")
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    masters: dict[tuple[str, str], tuple[Path, int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-expire-") as tmp:
        root = Path(tmp)
        for label, system, src in runs:
            for variant in ("history", "baseline"):
                basedir = root / f"{len(masters)}-{system}-{variant}"
                create(system, basedir, src)
                start(system, basedir, src)  # registers the master, builders and workers
                fill(basedir / "state.sqlite", builds=args.builds, log_lines=0)
                sid = silence(
                    basedir / "state.sqlite", running=args.running, history=variant == "history"
                )
                masters[label, variant] = (basedir, sid)
        keys = list(masters)
        for r in range(args.rounds):
            for key in keys if r % 2 == 0 else list(reversed(keys)):
                label = key[0]
                system, src = next((s, p) for lb, s, p in runs if lb == label)
                results.setdefault(key, []).append(start(system, masters[key][0], src))
        # the cleanup alone, buildyard's: in-process CPU of the query work
        cleanup: dict[tuple[str, str], float] = {}
        for label, system, src in runs:
            if system != "buildyard":
                continue
            for variant in ("history", "baseline"):
                basedir, sid = masters[label, variant]
                cleanup[label, variant] = cleanup_seconds(
                    basedir / "state.sqlite", sid, src, max(3, args.rounds)
                )
        print(f"load after: {load()}")
        report(args, runs, results, masters, cleanup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

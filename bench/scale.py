"""buildyard at scale, side by side with stock Buildbot 4.3.0 in one run.

Two workloads, each run on both systems (alternating which goes first), on SQLite:

* **builders**: a master with ``--builders`` builders and ``--workers`` workers (that never
  connect). *Cold* is the first start of a new master (every builder and worker is registered
  in the database); *warm* is an ordinary restart (median of ``--rounds``). Time is from process
  start until the master says it is running; *idle RSS* is the master's resident memory (with
  its child processes) ``--idle`` seconds later.
* **REST**: a master with ``--rest-builders`` builders whose database is filled in bulk through
  its own schema (reflected, so the same rows go into Buildbot's tables and ours), once with
  ``--small`` finished builds and once with ``--builds``, plus as many changes and build
  requests and one log of ``--log-lines`` lines. Each REST read is timed from this process
  (median of ``--rounds``) on the small and the big history; the ratio big/small shows how a
  read grows with the history.

The machine's load is printed before and after: the two systems share it, so compare the
ratios of one run, not the absolute figures of different runs.

    .venv/bin/python bench/scale.py                      # the full run (docs/performance.md)
    .venv/bin/python bench/scale.py --only buildyard --builders 50 --builds 500 --small 50 \\
        --log-lines 2000 --rounds 1                      # a smoke run (tests/test_bench_smoke.py)
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen

SYSTEMS = ("buildyard", "buildbot")

CONFIG = """\
from {package}.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w%d" % i, "pass") for i in range({workers})]
c['protocols'] = {{'pb': {{'port': 'tcp:0:interface=127.0.0.1'}}}}
c['builders'] = [
    util.BuilderConfig(name="b%05d" % i, workernames=["w%d" % (i % {workers})],
                       factory=util.BuildFactory())
    for i in range({builders})
]
c['schedulers'] = [schedulers.ForceScheduler(name='force',
                                             builderNames=[b.name for b in c['builders']])]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotNetUsageData'] = None
{www}
"""

WWW = "c['www'] = {{'port': 'tcp:{port}:interface=127.0.0.1'}}"

MARKER = {"buildyard": "master_started", "buildbot": "BuildMaster is running"}
# where each says it is running: buildyard logs to its standard output, Buildbot to twistd.log
LOG = {"buildyard": "stdout.log", "buildbot": "twistd.log"}

T0 = 1_700_000_000
BATCH = 5000
LINES_PER_CHUNK = 1000


def _command(system: str) -> list[str]:
    if system == "buildyard":
        return [sys.executable, "-m", "buildyard.cli.main"]
    from buildyard.testing.stock import buildbot_venv

    return [str(buildbot_venv() / "bin" / "buildbot")]


def create(
    system: str, basedir: Path, *, builders: int, workers: int, www_port: int | None
) -> None:
    subprocess.run([*_command(system), "create-master", "-q", str(basedir)], check=True)
    (basedir / "master.cfg").write_text(
        CONFIG.format(
            package=system,
            builders=builders,
            workers=workers,
            www=WWW.format(port=www_port) if www_port else "",
        )
    )


def _wait_for(log: Path, marker: str, proc: subprocess.Popen[bytes], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if log.exists() and marker in log.read_text(errors="replace"):
            return time.monotonic()
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text()[-2000:]}")
        time.sleep(0.02)
    raise RuntimeError(f"no {marker!r} in {log} after {timeout}s")


def start(system: str, basedir: Path) -> tuple[subprocess.Popen[bytes], float]:
    """The running master and how long it took to say so."""
    log = basedir / LOG[system]
    log.unlink(missing_ok=True)
    with (basedir / "stdout.log").open("wb") as out:  # truncated: a new log for each start
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [*_command(system), "start", "--nodaemon", str(basedir)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        return proc, _wait_for(log, MARKER[system], proc, 1800) - t0
    except BaseException:
        end_popen(proc)
        raise


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, in MiB."""
    total = 0.0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# -- builders: cold and warm start, idle memory ---------------------------------------------


def bench_builders(args: argparse.Namespace, root: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {s: {} for s in args.systems}
    dirs = {s: root / f"builders-{s}" for s in args.systems}
    for s in args.systems:
        create(s, dirs[s], builders=args.builders, workers=args.workers, www_port=None)
    order = list(args.systems)
    for s in order:  # cold: the first start registers every builder and worker
        proc, took = start(s, dirs[s])
        end_popen(proc)
        out[s]["cold"] = took
    warm: dict[str, list[float]] = {s: [] for s in order}
    rss: dict[str, list[float]] = {s: [] for s in order}
    for i in range(args.rounds):
        for s in order if i % 2 == 0 else reversed(order):
            proc, took = start(s, dirs[s])
            try:
                time.sleep(args.idle)
                rss[s].append(rss_mib(proc.pid))
            finally:
                end_popen(proc)
            warm[s].append(took)
    for s in order:
        out[s]["warm"] = statistics.median(warm[s])
        out[s]["rss"] = statistics.median(rss[s])
    return out


# -- REST on a small and a big history --------------------------------------------------------


def fill(db_path: Path, *, builds: int, log_lines: int) -> dict[str, int]:
    """Finished builds round-robin over the builders (each with its buildset, request, step and
    log), as many changes, and one step whose log has ``log_lines`` lines. Written through the
    database's own tables (reflected), so the same rows fit Buildbot's schema and ours."""
    engine = sa.create_engine(f"sqlite:///{db_path}")
    md = sa.MetaData()
    md.reflect(engine)

    def insert(conn: sa.Connection, name: str, rows: list[dict[str, Any]]) -> None:
        table = md.tables[name]
        keep = set(table.c.keys())
        if rows:
            conn.execute(table.insert(), [{k: v for k, v in r.items() if k in keep} for r in rows])

    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA synchronous=OFF")
        masterid = conn.execute(sa.text("SELECT min(id) FROM masters")).scalar_one()
        builderids = [r[0] for r in conn.execute(sa.text("SELECT id FROM builders ORDER BY id"))]
        workerid = conn.execute(sa.text("SELECT min(id) FROM workers")).scalar_one()
        numbers = [0] * len(builderids)
        for first in range(0, builds, BATCH):
            rows: dict[str, list[dict[str, Any]]] = {
                k: []
                for k in (
                    "sourcestamps",
                    "changes",
                    "buildsets",
                    "buildset_sourcestamps",
                    "buildrequests",
                    "builds",
                    "steps",
                    "logs",
                )
            }
            for i in range(first, min(builds, first + BATCH)):
                ident, b = i + 1, i % len(builderids)
                numbers[b] += 1
                at = T0 + i * 10
                rev = f"{ident:040x}"
                rows["sourcestamps"].append(
                    {
                        "id": ident,
                        "ss_hash": f"{ident:040d}",
                        "branch": "main",
                        "revision": rev,
                        "repository": "https://example.org/repo.git",
                        "codebase": "",
                        "project": "proj",
                        "created_at": at,
                    }
                )
                rows["changes"].append(
                    {
                        "changeid": ident,
                        "author": "dev <dev@example.org>",
                        "comments": f"change {ident}",
                        "branch": "main",
                        "revision": rev,
                        "revlink": "",
                        "when_timestamp": at,
                        "category": None,
                        "repository": "https://example.org/repo.git",
                        "codebase": "",
                        "project": "proj",
                        "sourcestampid": ident,
                    }
                )
                rows["buildsets"].append(
                    {
                        "id": ident,
                        "reason": "bench",
                        "submitted_at": at,
                        "complete": 1,
                        "complete_at": at + 60,
                        "results": 0,
                    }
                )
                rows["buildset_sourcestamps"].append(
                    {"id": ident, "buildsetid": ident, "sourcestampid": ident}
                )
                rows["buildrequests"].append(
                    {
                        "id": ident,
                        "buildsetid": ident,
                        "builderid": builderids[b],
                        "priority": 0,
                        "complete": 1,
                        "results": 0,
                        "submitted_at": at,
                        "complete_at": at + 60,
                        "waited_for": 0,
                    }
                )
                rows["builds"].append(
                    {
                        "id": ident,
                        "number": numbers[b],
                        "builderid": builderids[b],
                        "buildrequestid": ident,
                        "workerid": workerid,
                        "masterid": masterid,
                        "started_at": at,
                        "complete_at": at + 60,
                        "locks_duration_s": 0,
                        "state_string": "finished",
                        "results": 0,
                    }
                )
                rows["steps"].append(
                    {
                        "id": ident,
                        "number": 0,
                        "name": "shell",
                        "buildid": ident,
                        "started_at": at + 1,
                        "locks_acquired_at": at + 1,
                        "complete_at": at + 59,
                        "state_string": "done",
                        "results": 0,
                        "urls_json": "[]",
                        "hidden": 0,
                    }
                )
                rows["logs"].append(
                    {
                        "id": ident,
                        "name": "stdio",
                        "slug": "stdio",
                        "stepid": ident,
                        "complete": 1,
                        "num_lines": log_lines if ident == 1 else 0,
                        "type": "s",
                    }
                )
            for name, batch in rows.items():
                insert(conn, name, batch)
        # the big log: step 1's, in chunks of plain text
        chunks = []
        for start in range(0, log_lines, LINES_PER_CHUNK):
            end = min(log_lines, start + LINES_PER_CHUNK)
            text = "".join(f"oline {k} of the big log\n" for k in range(start, end))
            chunks.append(
                {
                    "logid": 1,
                    "first_line": start,
                    "last_line": end - 1,
                    "content": text.encode(),
                    "compressed": 0,
                }
            )
            if len(chunks) >= 100:
                insert(conn, "logchunks", chunks)
                chunks = []
        insert(conn, "logchunks", chunks)
    engine.dispose()
    return {"builderid": builderids[len(builderids) // 2], "logid": 1, "log_lines": log_lines}


def rest_requests(sample: dict[str, int]) -> list[tuple[str, str]]:
    """(label, path?query) of each timed read."""
    lines = sample["log_lines"]
    return [
        ("builds newest 200", "builds?limit=200&order=-buildid"),
        ("builds of a builder", f"builders/{sample['builderid']}/builds?limit=25&order=-number"),
        ("build requests newest 50", "buildrequests?limit=50&order=-buildrequestid"),
        ("changes newest 30", "changes?limit=30&order=-changeid"),
        (
            "log: last 1000 lines",
            f"logs/{sample['logid']}/contents?offset={max(0, lines - 1000)}&limit=1000",
        ),
    ]


def _get(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as resp:
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url}: {resp.status}")
    return time.perf_counter() - t0


def bench_rest(args: argparse.Namespace, root: Path) -> dict[tuple[str, str, str], float]:
    """(system, size, label) -> median seconds."""
    out: dict[tuple[str, str, str], float] = {}
    sizes = {"small": args.small, "big": args.builds}
    masters: dict[tuple[str, str], tuple[Path, int, dict[str, int]]] = {}
    for s in args.systems:
        for size, n in sizes.items():
            basedir, port = root / f"rest-{s}-{size}", free_port()
            create(s, basedir, builders=args.rest_builders, workers=5, www_port=port)
            proc, _ = start(s, basedir)  # registers the builders, workers and the master
            end_popen(proc)
            sample = fill(basedir / "state.sqlite", builds=n, log_lines=args.log_lines)
            masters[s, size] = (basedir, port, sample)
    # every master runs at once and each read goes round them in turn, so that the small and
    # the big history (and the two systems) see the same load
    running: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
    try:
        for key in masters:
            running[key], _ = start(key[0], masters[key][0])
        keys = list(masters)
        times: dict[tuple[str, str, str], list[float]] = {}
        for r in range(args.rounds + 1):  # the first round warms the caches
            for label_index in range(len(rest_requests(masters[keys[0]][2]))):
                for key in keys if r % 2 == 0 else reversed(keys):
                    _, port, sample = masters[key]
                    label, path = rest_requests(sample)[label_index]
                    try:
                        took = _get(f"http://127.0.0.1:{port}/api/v2/{path}")
                    except (OSError, RuntimeError) as exc:
                        print(f"({key[0]} {key[1]}: {label} failed: {exc})")
                        took = float("nan")
                    if r:
                        times.setdefault((*key, label), []).append(took)
        out = {k: statistics.median(v) for k, v in times.items()}
    finally:
        for proc in running.values():
            end_popen(proc)
    return out


# -- report -----------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and not math.isnan(a) and not math.isnan(b) else "-"


def report(
    args: argparse.Namespace,
    builders: dict[str, dict[str, float]] | None,
    rest: dict[tuple[str, str, str], float] | None,
    print_: Callable[[str], None] = print,
) -> None:
    both = len(args.systems) == 2
    if builders is not None:
        print_(f"## {args.builders} builders, {args.workers} workers")
        print_(
            "| figure | " + " | ".join(args.systems) + (" | buildbot/buildyard |" if both else " |")
        )
        print_("|---|" + "---|" * (len(args.systems) + both))
        for key, label, unit in (
            ("cold", "cold start", "s"),
            ("warm", "warm start", "s"),
            ("rss", "idle RSS", "MiB"),
        ):
            cells = [f"{builders[s][key]:.2f} {unit}" for s in args.systems]
            if both:
                cells.append(_ratio(builders["buildbot"][key], builders["buildyard"][key]))
            print_(f"| {label} | " + " | ".join(cells) + " |")
    if rest is not None:
        print_(
            f"## REST on {args.small} and {args.builds} builds "
            f"({args.rest_builders} builders, a log of {args.log_lines} lines), median ms"
        )
        head = [f"{s} {n}" for s in args.systems for n in (args.small, args.builds)]
        head += [f"{s} big/small" for s in args.systems]
        if both:
            head.append(f"buildbot/buildyard at {args.builds}")
        print_("| request | " + " | ".join(head) + " |")
        print_("|---|" + "---|" * len(head))
        labels = dict.fromkeys(label for (_, _, label) in rest)
        for label in labels:
            cells = [
                f"{rest[s, size, label] * 1000:.1f}"
                for s in args.systems
                for size in ("small", "big")
            ]
            cells += [_ratio(rest[s, "big", label], rest[s, "small", label]) for s in args.systems]
            if both:
                cells.append(
                    _ratio(rest["buildbot", "big", label], rest["buildyard", "big", label])
                )
            print_(f"| {label} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builders", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--rest-builders", type=int, default=100)
    parser.add_argument("--builds", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--log-lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds before reading RSS")
    parser.add_argument("--only", choices=SYSTEMS, help="run one system (no Buildbot needed)")
    parser.add_argument("--skip", choices=("builders", "rest"), action="append", default=[])
    args = parser.parse_args(argv)
    args.systems = (args.only,) if args.only else SYSTEMS

    root = Path(tempfile.mkdtemp(prefix="buildyard-scale-"))
    try:
        cpu = "?"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        print(f"machine: {os.cpu_count()} CPUs, {cpu}; load before: {load()}")
        builders = None if "builders" in args.skip else bench_builders(args, root)
        rest = None if "rest" in args.skip else bench_rest(args, root)
        print(f"load after: {load()}")
        report(args, builders, rest)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

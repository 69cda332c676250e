"""The built-in web UI at scale: 1,000 builders and 100,000 finished builds.

A real master (``buildyard start --nodaemon``, SQLite, 1,000 builders, 50 workers that never
connect) is started once to register its builders, stopped, and its database is filled in bulk
(SQLAlchemy Core on the master's own schema, in batches): ``--builds`` finished builds spread
round-robin over the builders, each with a step, a log of a few lines and a property, plus
changes and unclaimed build requests. The master is then started again and, for each page of
the UI, the REST requests that page makes (as static/*.js issues them) are timed one after
another from this process (the median of ``--rounds`` for each request), and, when Chromium is
installed, the time until the page shows its content in headless Chromium (the median of
``--rounds`` fresh page loads). The master's RSS is read from /proc before and after.

    .venv/bin/python bench/ui_scale.py --builders 1000 --builds 100000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w%d" % i, "pass") for i in range({workers})]
c['builders'] = [
    util.BuilderConfig(name="b%04d" % i, workernames=["w%d" % (i % {workers})],
                       factory=util.BuildFactory([steps.ShellCommand(command=["true"])]),
                       tags=["t%d" % (i % 7)], description="builder number %d" % i)
    for i in range({builders})
]
c['schedulers'] = [schedulers.ForceScheduler(name="force",
                                             builderNames=[b.name for b in c['builders']])]
c['www'] = {{'port': 'tcp:{port}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotNetUsageData'] = None
"""

BATCH = 5000
T0 = 1_700_000_000
RESULTS = (0, 0, 0, 0, 1, 2, 0, 0, 2, 4)  # mostly SUCCESS, some WARNINGS/FAILURE/EXCEPTION


def _wait_for(log: Path, marker: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if log.exists() and marker in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text()[-3000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"no {marker!r} in {log} after {timeout}s")


def start_master(basedir: Path) -> subprocess.Popen[bytes]:
    log = basedir / "out.log"
    log.unlink(missing_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "buildyard.cli.main", "start", "--nodaemon", str(basedir)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _wait_for(log, "master_started", proc, 600)
    return proc


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclasses.dataclass
class Sample:
    """What the pages are shown on: ids found in the filled database."""

    builderid: int
    build_number: int
    buildid: int
    workerid: int
    stepid: int
    logid: int
    pending_builderids: list[int]
    builderids_by_name: list[int]
    workerids_by_name: list[int]


def _fill_changes(conn: sa.Connection, n_changes: int) -> None:
    """Changes, each with its source stamp and a file."""
    ss_rows, change_rows, file_rows = [], [], []
    for i in range(1, n_changes + 1):
        rev = f"{i:040x}"
        ss_rows.append(
            {
                "id": i,
                "ss_hash": f"{i:040d}",
                "branch": "main",
                "revision": rev,
                "repository": "https://example.org/repo.git",
                "codebase": "",
                "project": "proj",
                "created_at": T0 + i,
            }
        )
        change_rows.append(
            {
                "changeid": i,
                "author": f"dev{i % 13} <dev{i % 13}@example.org>",
                "committer": None,
                "comments": f"change {i}\n\nsome details about change {i}",
                "branch": "main",
                "revision": rev,
                "revlink": f"https://example.org/commit/{rev}",
                "when_timestamp": T0 + i * 30,
                "category": None,
                "repository": "https://example.org/repo.git",
                "codebase": "",
                "project": "proj",
                "sourcestampid": i,
                "parent_changeids": i - 1 if i > 1 else None,
            }
        )
        file_rows.append({"changeid": i, "filename": f"src/file{i % 50}.c"})
    conn.execute(t.sourcestamps.insert(), ss_rows)
    conn.execute(t.changes.insert(), change_rows)
    conn.execute(t.change_files.insert(), file_rows)


def fill(db_path: Path, n_builds: int, n_changes: int, n_pending: int) -> Sample:
    """Finished builds (round-robin over the builders), each with a step, a log and a
    property; changes; unclaimed build requests. Bulk inserts in batches, one transaction."""
    engine = sa.create_engine(f"sqlite:///{db_path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA synchronous=OFF")
        masterid = conn.execute(sa.select(sa.func.min(t.masters.c.id))).scalar_one()
        builderids = [
            r.id for r in conn.execute(sa.select(t.builders.c.id).order_by(t.builders.c.name))
        ]
        workers = {r.name: r.id for r in conn.execute(sa.select(t.workers.c.id, t.workers.c.name))}
        worker_for = [workers[f"w{i % len(workers)}"] for i in range(len(builderids))]

        _fill_changes(conn, n_changes)

        numbers = [0] * len(builderids)
        chunk = zlib.compress(b"".join(b"line %d of the log\n" % k for k in range(5)))
        for start in range(0, n_builds, BATCH):
            bs, br, bss, builds, props, steps, logs, chunks = [], [], [], [], [], [], [], []
            for i in range(start, min(n_builds, start + BATCH)):
                ident = i + 1
                b = i % len(builderids)
                numbers[b] += 1
                started = T0 + i * 10
                results = RESULTS[(i + i // len(builderids)) % len(RESULTS)]
                bs.append(
                    {
                        "id": ident,
                        "external_idstring": None,
                        "reason": "bench",
                        "submitted_at": started - 5,
                        "complete": 1,
                        "complete_at": started + 60,
                        "results": results,
                    }
                )
                bss.append({"id": ident, "buildsetid": ident, "sourcestampid": 1 + i % n_changes})
                br.append(
                    {
                        "id": ident,
                        "buildsetid": ident,
                        "builderid": builderids[b],
                        "priority": 0,
                        "complete": 1,
                        "results": results,
                        "submitted_at": started - 5,
                        "complete_at": started + 60,
                        "waited_for": 0,
                    }
                )
                builds.append(
                    {
                        "id": ident,
                        "number": numbers[b],
                        "builderid": builderids[b],
                        "buildrequestid": ident,
                        "workerid": worker_for[b],
                        "masterid": masterid,
                        "started_at": started,
                        "complete_at": started + 60,
                        "locks_duration_s": 0,
                        "state_string": "finished",
                        "results": results,
                    }
                )
                props.append(
                    {
                        "buildid": ident,
                        "name": "buildnumber",
                        "value": json.dumps(numbers[b]),
                        "source": "Build",
                    }
                )
                steps.append(
                    {
                        "id": ident,
                        "number": 0,
                        "name": "shell",
                        "buildid": ident,
                        "started_at": started + 1,
                        "locks_acquired_at": started + 1,
                        "complete_at": started + 59,
                        "state_string": "'true'",
                        "results": results,
                        "urls_json": "[]",
                        "hidden": 0,
                    }
                )
                logs.append(
                    {
                        "id": ident,
                        "name": "stdio",
                        "slug": "stdio",
                        "stepid": ident,
                        "complete": 1,
                        "num_lines": 5,
                        "type": "s",
                    }
                )
                chunks.append(
                    {
                        "logid": ident,
                        "first_line": 0,
                        "last_line": 4,
                        "content": chunk,
                        "compressed": 1,
                    }
                )
            conn.execute(t.buildsets.insert(), bs)
            conn.execute(t.buildset_sourcestamps.insert(), bss)
            conn.execute(t.buildrequests.insert(), br)
            conn.execute(t.builds.insert(), builds)
            conn.execute(t.build_properties.insert(), props)
            conn.execute(t.steps.insert(), steps)
            conn.execute(t.logs.insert(), logs)
            conn.execute(t.logchunks.insert(), chunks)

        # unclaimed requests, each in its own buildset, on every 7th builder
        base = n_builds + 1
        pending = [builderids[(k * 7) % len(builderids)] for k in range(n_pending)]
        conn.execute(
            t.buildsets.insert(),
            [
                {"id": base + k, "reason": "bench", "submitted_at": T0 + n_builds * 10 + k}
                for k in range(n_pending)
            ],
        )
        conn.execute(
            t.buildrequests.insert(),
            [
                {
                    "id": base + k,
                    "buildsetid": base + k,
                    "builderid": bid,
                    "priority": 0,
                    "complete": 0,
                    "submitted_at": T0 + n_builds * 10 + k,
                }
                for k, bid in enumerate(pending)
            ],
        )
        # a failing build half-way through a builder half-way down the list
        b = len(builderids) // 2
        number = numbers[b] // 2
        while number < numbers[b]:
            build = conn.execute(
                sa.select(t.builds).where(
                    t.builds.c.builderid == builderids[b], t.builds.c.number == number
                )
            ).one()
            if build.results == 2:
                break
            number += 1
        worker_ids = [
            r.id for r in conn.execute(sa.select(t.workers.c.id).order_by(t.workers.c.name))
        ]
    engine.dispose()
    return Sample(
        builderid=builderids[b],
        build_number=number,
        buildid=build.id,
        workerid=build.workerid,
        stepid=build.id,
        logid=build.id,
        pending_builderids=pending,
        builderids_by_name=builderids,
        workerids_by_name=worker_ids,
    )


Request = tuple[str, dict[str, Any]]

BUILD_FIELDS = ["buildid", "number", "results", "complete", "state_string"]


def page_requests(s: Sample) -> dict[str, list[Request]]:
    """The REST requests each page makes on its first load, as static/*.js issues them."""
    first_builders = s.builderids_by_name[:50]
    first_workers = s.workerids_by_name[:50]
    n = s.build_number
    pending_builders = sorted(set(s.pending_builderids[:50]))
    return {
        "builders": [
            ("builders", {"order": "name", "limit": 50, "offset": 0}),
            ("builds", {"builderid__eq": first_builders, "order": "-buildid", "limit": 200}),
        ],
        "builder": [
            (f"builders/{s.builderid}", {}),
            (f"builders/{s.builderid}/forceschedulers", {"order": "name"}),
            (f"builders/{s.builderid}/builds", {"order": "-number", "limit": 25, "offset": 0}),
            (
                "buildrequests",
                {
                    "builderid": s.builderid,
                    "claimed": "false",
                    "complete": "false",
                    "order": "buildrequestid",
                    "limit": 50,
                },
            ),
            (f"builders/{s.builderid}/workers", {"order": "name", "limit": 100}),
            (f"workers/{s.workerid}", {"field": ["workerid", "name"]}),
        ],
        "build": [
            (f"builders/{s.builderid}", {}),
            (f"builders/{s.builderid}/builds/{n}", {}),
            (f"workers/{s.workerid}", {"field": ["workerid", "name"]}),
            (f"builds/{s.buildid}/steps", {"order": "number", "limit": 1000}),
            (f"builds/{s.buildid}/properties", {}),
            (f"builds/{s.buildid}/changes", {"limit": 50}),
            (
                "builds",
                {
                    "builderid": s.builderid,
                    "number__eq": [n - 1, n + 1],
                    "field": ["builderid", "number", "results", "complete"],
                },
            ),
            # the failing step opens by itself: its logs and the log's lines
            (f"steps/{s.stepid}/logs", {"limit": 200}),
            (f"logs/{s.logid}/contents", {}),
        ],
        "grid": [
            ("builders", {"order": "name", "limit": 25, "offset": 0}),
            (
                "builds",
                {
                    "builderid__eq": first_builders[:25],
                    "order": "-buildid",
                    "limit": 375,
                    "field": [*BUILD_FIELDS, "builderid"],
                },
            ),
        ],
        "workers": [
            ("workers", {"order": "name", "limit": 50, "offset": 0}),
            (
                "builds",
                {
                    "complete": "false",
                    "workerid": first_workers,
                    "field": ["buildid", "number", "builderid", "workerid", "complete"],
                    "limit": 500,
                },
            ),
        ],
        "changes": [("changes", {"order": "-changeid", "limit": 30, "offset": 0})],
        "pending": [
            (
                "buildrequests",
                {
                    "claimed": "false",
                    "complete": "false",
                    "order": "buildrequestid",
                    "limit": 50,
                    "offset": 0,
                },
            ),
            ("builders", {"builderid__eq": pending_builders, "limit": len(pending_builders)}),
        ],
        "masters": [("masters", {"order": "name", "limit": 50, "offset": 0})],
    }


def page_requests_before(s: Sample) -> dict[str, list[Request]]:
    """As the UI read the builders and grid pages before: one request per builder."""
    pages = page_requests(s)
    pages["builders"] = [
        ("builders", {"order": "name", "limit": 50, "offset": 0}),
        *(
            (f"builders/{bid}/builds", {"order": "-number", "limit": 1})
            for bid in s.builderids_by_name[:50]
        ),
    ]
    pages["grid"] = [
        ("builders", {"order": "name", "limit": 25, "offset": 0}),
        *(
            (
                f"builders/{bid}/builds",
                {"order": "-number", "limit": 15, "field": BUILD_FIELDS},
            )
            for bid in s.builderids_by_name[:25]
        ),
    ]
    pages["pending"] = [
        pages["pending"][0],
        *((f"builders/{bid}", {}) for bid in sorted(set(s.pending_builderids[:50]))),
    ]
    return pages


# what shows that each page has rendered its content
PAGES = {
    "builders": ("#/builders", "table.builders td.last-build a"),
    "builder": ("#/builders/{builderid}", "table.builds tbody tr"),
    "build": ("#/builders/{builderid}/builds/{number}", ".build-nav a"),
    "grid": ("#/grid", "table.grid td.grid-cell"),
    "workers": ("#/workers", "tr[data-workerid]"),
    "changes": ("#/changes", "details.change"),
    "pending": ("#/pending", "table.requests tbody tr"),
    "masters": ("#/masters", "main table.list tbody tr"),
}
# elements every page must also have before it counts as rendered
PAGE_ALSO = {
    "builder": ["form.force", "ul.workers"],
    "build": ["table.props", ".steps .step", ".step .log"],
}


def _query(params: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key, value in params.items():
        for v in value if isinstance(value, list) else [value]:
            out.append((key, str(v)))
    return out


async def time_requests(
    www: str, pages: dict[str, list[Request]], rounds: int
) -> dict[str, list[tuple[str, float, int]]]:
    """Per page: (request, median seconds, bytes) for each request, one request at a time."""
    out: dict[str, list[tuple[str, float, int]]] = {}
    headers = {"Accept": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
        for name, requests in pages.items():
            rows = []
            for path, params in requests:
                times, size = [], 0
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    async with http.get(
                        f"{www}/api/v2/{path}", params=_query(params), headers=headers
                    ) as resp:
                        body = await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"{path} {params}: {resp.status} {body[:300]!r}")
                    times.append(time.perf_counter() - t0)
                    size = len(body)
                rows.append((_describe(path, params), statistics.median(times), size))
            out[name] = rows
    return out


def _describe(path: str, params: dict[str, Any]) -> str:
    parts = []
    for key, value in params.items():
        if isinstance(value, list) and len(value) > 3:
            parts.append(f"{key}=[{len(value)} values]")
        else:
            parts.append(f"{key}={value}")
    return f"{path}?{'&'.join(parts)}" if parts else path


async def time_browser(www: str, s: Sample, rounds: int) -> dict[str, float] | None:
    try:
        from buildyard.testing.browser import FLAGS, chromium_path

        exe = chromium_path()
        from playwright.async_api import async_playwright
    except (ImportError, RuntimeError) as exc:
        print(f"(no browser figures: {exc})")
        return None
    out: dict[str, float] = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=exe, args=FLAGS)
        try:
            for name, (hash_, selector) in PAGES.items():
                url = f"{www}/" + hash_.format(builderid=s.builderid, number=s.build_number)
                times = []
                for _ in range(rounds + 1):  # the first load warms the browser's cache
                    context = await browser.new_context()
                    page = await context.new_page()
                    t0 = time.perf_counter()
                    await page.goto(url)
                    for sel in [selector, *PAGE_ALSO.get(name, [])]:
                        await page.wait_for_selector(sel, timeout=60_000)
                    times.append(time.perf_counter() - t0)
                    await context.close()
                out[name] = statistics.median(times[1:])
        finally:
            await browser.close()
    return out


def report(
    args: argparse.Namespace,
    figures: dict[str, list[tuple[str, float, int]]],
    browser: dict[str, float] | None,
) -> None:
    print(
        f"builders={args.builders} builds={args.builds} changes={args.changes} "
        f"pending={args.pending} rounds={args.rounds}"
        + (" (requests as before)" if args.before else "")
    )
    print(f"{'page':10} {'requests':>8} {'sum ms':>8} {'max ms':>8} {'browser ms':>10}")
    for name, rows in figures.items():
        shown = f"{browser[name] * 1000:10.0f}" if browser and name in browser else "         -"
        print(
            f"{name:10} {len(rows):8d} {sum(r[1] for r in rows) * 1000:8.1f} "
            f"{max(r[1] for r in rows) * 1000:8.1f} {shown}"
        )
    print("slowest requests (median ms, bytes):")
    every = [(ms, size, desc) for rows in figures.values() for desc, ms, size in rows]
    for ms, size, desc in sorted(every, reverse=True)[:12]:
        print(f"  {ms * 1000:8.1f} {size:8d}  {desc}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builders", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--builds", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument("--pending", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--before",
        action="store_true",
        help="time the REST requests as the UI made them before it read builders and their "
        "builds in batches (the browser figures are always those of the UI in the tree)",
    )
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the master in this directory")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="buildyard-bench-"))
    basedir = root / "master"
    try:
        port = free_port()
        fresh = not (basedir / "state.sqlite").exists()
        if fresh:
            subprocess.run(
                [sys.executable, "-m", "buildyard.cli.main", "create-master", "-q", str(basedir)],
                check=True,
            )
        (basedir / "master.cfg").write_text(
            CONFIG.format(builders=args.builders, workers=args.workers, port=port)
        )
        if fresh:
            t0 = time.monotonic()
            end_popen(start_master(basedir))  # registers the builders, workers and master
            t1 = time.monotonic()
            sample = fill(basedir / "state.sqlite", args.builds, args.changes, args.pending)
            (basedir / "sample.json").write_text(json.dumps(dataclasses.asdict(sample)))
            print(
                f"first start {t1 - t0:.1f}s; filled {args.builds} builds in "
                f"{time.monotonic() - t1:.1f}s"
            )
        sample = Sample(**json.loads((basedir / "sample.json").read_text()))
        t0 = time.monotonic()
        proc = start_master(basedir)
        print(f"start with {args.builds} builds: {time.monotonic() - t0:.1f}s")
        www = f"http://127.0.0.1:{port}"
        try:
            rss0 = rss_mb(proc.pid)
            pages = page_requests_before(sample) if args.before else page_requests(sample)
            figures = asyncio.run(time_requests(www, pages, args.rounds))
            browser = None if args.no_browser else asyncio.run(time_browser(www, sample, 3))
            rss1 = rss_mb(proc.pid)
        finally:
            end_popen(proc)
        report(args, figures, browser)
        print(f"master RSS: {rss0:.0f} MB after start, {rss1:.0f} MB after the pages")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

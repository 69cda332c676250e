"""Several masters on one PostgreSQL database: builds per second with one, two and three
masters, and the latency of an event from master A to a /ws client of master B.

**Builds per second.** The 300-build mix of tests/e2e/test_multimaster_scale.py (120 forced
builds through the masters' REST APIs, 60 changes posted to their change hooks, 40 parents whose
``Trigger(waitForFinish=True)`` fires two children each), submitted at once, spread over the
masters, on the same six buildyard-worker processes whatever the number of masters (two by two
round the masters: all six on one master, 4 + 2 on two, 2 + 2 + 2 on three), on a new database
of one throwaway PostgreSQL server each time. The time runs from the first submission to the
moment every build request is complete (this process polls the database every 0.25 s); every
request must end SUCCESS. The runs alternate (1, 2, 3 masters, then again) so that the machine's
changing load falls on all of them; the load average is printed with each run, and the figures
to compare are the ratios to the one-master run of the same round.

**Latency.** In each two-master round, once its builds are done, a builder whose only worker
is connected to master A runs a step that sets its summary to ``tick <n> <time.time()>``
``--ticks`` times, ``--gap`` seconds apart (so the event ``steps/<id>/updated`` carries the
moment A's step made it; the time includes A writing the summary to the database, which comes
before the event). A /ws client of A and one of B (in this process, on the same clock) note when
each tick arrives: latency = arrival - stamp. A's own client is the baseline (no database
between); B's shows the hop through PostgreSQL. ``--latency-builds`` builds, one at a time.

    .venv/bin/python bench/multimaster.py               # 3 rounds, about 5-10 minutes
    .venv/bin/python bench/multimaster.py --rounds 1 --masters 1,3
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from buildyard.testing.multimaster import Cluster, Mix, all_complete, call, cluster, submit
from buildyard.testing.postgres import PostgresServer

# a builder "ticker" on worker w0 (always connected to the first master), whose step stamps
# its summaries with the time it made them
TICKER = """
import asyncio as _asyncio
import time as _time
from buildyard.master.steps.base import BuildStep as _BuildStep

class Ticker(_BuildStep):
    def __init__(self, ticks, gap, **kwargs):
        super().__init__(**kwargs)
        self.ticks, self.gap, self.text = ticks, gap, "starting"

    def getCurrentSummary(self):
        return {{"step": self.text}}

    async def run(self):
        for n in range(self.ticks):
            self.text = f"tick {{n}} {{_time.time():.6f}}"
            await self.updateSummary()
            await _asyncio.sleep(self.gap)
        return util.SUCCESS

c['builders'].append(util.BuilderConfig(
    name="ticker", workernames=["w0"],
    factory=util.BuildFactory([Ticker({ticks}, {gap}, name="ticks")])))
c['schedulers'].append(schedulers.ForceScheduler(name="force-ticker", builderNames=["ticker"]))
"""


@dataclass
class Run:
    masters: int
    builds: int
    seconds: float
    load: tuple[float, float]

    @property
    def rate(self) -> float:
        return self.builds / self.seconds


@dataclass
class Report:
    runs: list[Run] = field(default_factory=list)
    # seconds from stamp to arrival, at A's /ws client and at B's
    on_a: list[float] = field(default_factory=list)
    on_b: list[float] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def _throughput(c: Cluster, mix: Mix, within: float) -> float:
    db = await asyncpg.connect(c.db_url)
    try:
        started = time.monotonic()
        await submit(c, mix)
        await all_complete(db, mix.builds, started + within)
        took = time.monotonic() - started
        bad = await db.fetchval("SELECT count(*) FROM buildrequests WHERE results <> 0")
        assert bad == 0, f"{bad} requests did not end SUCCESS"
        return took
    finally:
        await db.close()


async def _ws(http: aiohttp.ClientSession, www: int) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"http://127.0.0.1:{www}/ws")
    await ws.send_json({"cmd": "startConsuming", "path": "steps/*/*", "_id": 1})
    reply = await ws.receive_json()
    assert reply["code"] == 200, reply
    return ws


async def _ticks(
    ws: aiohttp.ClientWebSocketResponse, wanted: int, out: list[float], within: float
) -> None:
    """Note the latency of each tick until ``wanted`` arrived."""
    got = 0
    async with asyncio.timeout(within):
        while got < wanted:
            msg = await ws.receive_json()
            arrived = time.time()
            text = msg.get("m", {}).get("state_string") if "k" in msg else None
            if isinstance(text, str) and text.startswith("tick "):
                out.append(arrived - float(text.split()[2]))
                got += 1


async def _latency(c: Cluster, builds: int, ticks: int, gap: float, report: Report) -> None:
    a, b = c.masters[0], c.masters[1]
    builderid = c.builderids["ticker"]
    within = 60 + builds * ticks * gap * 4
    async with aiohttp.ClientSession() as http:
        on_a, on_b = await _ws(http, a.www), await _ws(http, b.www)
        try:
            for _ in range(builds):
                readers = [
                    asyncio.ensure_future(_ticks(on_a, ticks, report.on_a, within)),
                    asyncio.ensure_future(_ticks(on_b, ticks, report.on_b, within)),
                ]
                status, reply = await call(
                    a.api, "forceschedulers/force-ticker", "force", builderid=str(builderid)
                )
                assert status == 200, reply
                await asyncio.gather(*readers)
        finally:
            await on_a.close()
            await on_b.close()


async def run(
    server: PostgresServer,
    root: Path,
    *,
    rounds: int,
    masters: Sequence[int],
    workers: int,
    mix: Mix,
    latency_builds: int,
    ticks: int,
    gap: float,
    within: float,
) -> Report:
    report = Report()
    ticker = TICKER.format(ticks=ticks, gap=gap)
    for r in range(rounds):
        for n in masters:
            load0 = os.getloadavg()[0]
            where = root / f"r{r}-m{n}"
            where.mkdir()
            async with cluster(server, where, masters=n, worker_count=workers, extra=ticker) as c:
                took = await _throughput(c, mix, within)
                if n == 2 and latency_builds:
                    await _latency(c, latency_builds, ticks, gap, report)
            done = Run(n, mix.builds, took, (load0, os.getloadavg()[0]))
            report.runs.append(done)
            print(
                f"round {r + 1}, {n} master(s): {done.builds} builds in {took:.1f} s,"
                f" {done.rate:.1f} builds/s (load {load0:.2f} -> {done.load[1]:.2f})",
                flush=True,
            )
    return report


def summary(report: Report) -> list[str]:
    lines = []
    by_round: list[dict[int, Run]] = []
    for done in report.runs:
        if not by_round or done.masters in by_round[-1]:
            by_round.append({})
        by_round[-1][done.masters] = done
    for i, runs in enumerate(by_round):
        one = runs.get(1)
        ratios = "  ".join(
            f"{n}: {r.rate:.1f}/s" + (f" ({r.rate / one.rate:.2f}x)" if one else "")
            for n, r in sorted(runs.items())
        )
        lines.append(f"round {i + 1}: {ratios}")
    for name, values in (("A's /ws (same master)", report.on_a), ("B's /ws", report.on_b)):
        if values:
            lines.append(
                f"latency to {name}: p50 {percentile(values, 0.5) * 1000:.1f} ms,"
                f" p95 {percentile(values, 0.95) * 1000:.1f} ms ({len(values)} events)"
            )
    return lines


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--masters", default="1,2,3", help="the numbers of masters, comma-separated")
    p.add_argument("--workers", type=int, default=6)
    p.add_argument("--forced", type=int, default=Mix.forced)
    p.add_argument("--changes", type=int, default=Mix.changes)
    p.add_argument("--parents", type=int, default=Mix.parents)
    p.add_argument("--latency-builds", type=int, default=5)
    p.add_argument("--ticks", type=int, default=40, help="events per latency build")
    p.add_argument("--gap", type=float, default=0.05, help="seconds between two ticks")
    p.add_argument("--within", type=float, default=600, help="bound of one run, in seconds")
    return p


async def main(argv: Sequence[str] | None = None, server: PostgresServer | None = None) -> Report:
    """Run as the command line says; on ``server`` if given (else a throwaway one)."""
    args = parser().parse_args(argv)
    masters = [int(n) for n in args.masters.split(",")]
    if any(n < 1 for n in masters) or args.workers < 2:
        raise SystemExit("--masters: numbers of 1 or more; --workers: 2 or more")
    mix = Mix(forced=args.forced, changes=args.changes, parents=args.parents)
    own = server is None
    if server is None:
        server = PostgresServer()
        server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-mm-") as tmp:
            print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()}", flush=True)
            report = await run(
                server,
                Path(tmp),
                rounds=args.rounds,
                masters=masters,
                workers=args.workers,
                mix=mix,
                latency_builds=args.latency_builds if 2 in masters else 0,
                ticks=args.ticks,
                gap=args.gap,
                within=args.within,
            )
    finally:
        if own:
            server.stop()
    for line in summary(report):
        print(line)
    return report


if __name__ == "__main__":
    asyncio.run(main())

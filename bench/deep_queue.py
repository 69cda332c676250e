"""A deep queue, buildyard vs stock Buildbot 4.3.0 side by side: how fast pending requests drain.

For each depth of ``--pending`` (default 200 and 10,000), each master in turn (alternating, one
at a time, never together) is started from the same master.cfg text as ``bench/builds.py`` (its
``CONFIG``: one-step builds, ``collapseRequests`` off, SQLite, 4 workers configured) but with
no worker running. The requests are forced through the REST API (JSON-RPC ``force``, as
builds.py does), ``--in-flight`` at a time, for at most ``--force-within`` seconds: a master
that accepts them slowly gets fewer, and the table says how many it got. Then the 4 workers
are started, and this process polls the master's database read-only (every ``--poll-ms``):

* first build: seconds from the workers' start to the first request completed (it includes the
  workers' own start and connection, the same for both masters), and from the first worker
  seen connected (the master's ``connected_workers`` row) to it;
* drain: builds/s in each tenth of the queue (from the first build on), and overall (from the
  first build to the last), bounded by ``--drain-within`` seconds (a drain cut short says so).

The machine's load average is printed: the masters, their workers and this process share its
CPUs. Figures are ratios of the same run, not absolute speeds.

    .venv/bin/python bench/deep_queue.py --pending 200,10000

``--combinations buildyard`` runs buildyard alone (the smoke run of the tests does, with tiny
numbers).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

# builds.py's master.cfg, its Master, force and builder_ids: the same masters as that bench
from builds import (
    COMBINATIONS,
    WORKERS,
    Master,
    builder_ids,
    force,
    start_idle_master,
)

from buildyard.testing.workers import STOCK_PB, start_worker

SLICES = 10


@dataclasses.dataclass
class Drain:
    pending: int  # requests forced (and pending) when the workers started
    force_seconds: float
    first_build: float  # seconds from the workers' start to the first build finished
    first_connected: float  # seconds from the workers' start to the first one connected
    # (seconds, builds finished) from the workers' start
    samples: list[tuple[float, int]]
    complete: bool  # every request finished within --drain-within
    load: tuple[float, float]

    @property
    def drained(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def overall(self) -> float:
        """Builds/s from the first build to the last one seen."""
        first = next((t for t, n in self.samples if n >= 1), None)
        if first is None or self.drained < 2 or self.samples[-1][0] <= first:
            return 0.0
        return (self.drained - 1) / (self.samples[-1][0] - first)

    def slices(self) -> list[float | None]:
        """Builds/s in each tenth of the queue (None: not reached)."""
        rates: list[float | None] = []
        for i in range(SLICES):
            lo = max(1, self.pending * i // SLICES)
            hi = max(lo + 1, self.pending * (i + 1) // SLICES)
            t_lo = next((t for t, n in self.samples if n >= lo), None)
            t_hi = next((t for t, n in self.samples if n >= hi), None)
            if t_lo is None or t_hi is None or t_hi <= t_lo:
                rates.append(None)
            else:
                rates.append((hi - lo) / (t_hi - t_lo))
        return rates


async def force_many(
    master: Master, http: aiohttp.ClientSession, count: int, in_flight: int, within: float
) -> int:
    """Force up to ``count`` builds of ``one`` within ``within`` seconds; how many were."""
    builderid = master.builderids["one"]
    deadline = time.monotonic() + within
    left = iter(range(count))
    done = 0

    async def submitter() -> None:
        nonlocal done
        for _ in left:
            if time.monotonic() > deadline:
                return
            await force(master, http, builderid)
            done += 1

    await asyncio.gather(*(submitter() for _ in range(min(in_flight, count))))
    return done


async def measure(
    kind: str, worker_kind: str, root: Path, pending: int, args: argparse.Namespace
) -> Drain:
    load0 = os.getloadavg()[0]
    master, (pb_port, worker_port) = await asyncio.to_thread(
        start_idle_master, kind, root, 1, quiet_buildbot=args.quiet_buildbot
    )
    poll = args.poll_ms / 1000
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
            master.builderids = await builder_ids(master, http)
            t0 = time.monotonic()
            forced = await force_many(master, http, pending, args.in_flight, args.force_within)
            force_seconds = time.monotonic() - t0
        to = pb_port if worker_kind == STOCK_PB else worker_port

        async def start_one(i: int) -> None:
            proc = await asyncio.to_thread(
                start_worker, worker_kind, root / f"w{i}", to, f"w{i}", "pw"
            )
            master.workers.append(proc)

        started = time.monotonic()
        # the workers start together while the database is polled
        starting = asyncio.gather(*(start_one(i) for i in range(WORKERS)))
        samples: list[tuple[float, int]] = []
        first = connected = None
        deadline = started + args.drain_within
        done = 0
        try:
            while done < forced and time.monotonic() < deadline:
                done = master.query("SELECT count(*) FROM buildrequests WHERE complete = 1")[0][0]
                now = time.monotonic() - started
                if (
                    connected is None
                    and master.query("SELECT count(*) FROM connected_workers")[0][0]
                ):
                    connected = now
                if done and first is None:
                    first = now
                if not samples or samples[-1][1] != done:
                    samples.append((now, done))
                if starting.done():
                    master.check_alive()
                await asyncio.sleep(poll)
        finally:
            await starting
        failed = master.query(
            "SELECT count(*) FROM buildrequests WHERE complete = 1 AND results != 0"
        )[0][0]
        if failed:
            raise RuntimeError(f"{kind}: {failed} builds did not succeed")
    finally:
        await asyncio.to_thread(master.stop)
    return Drain(
        pending=forced,
        force_seconds=force_seconds,
        first_build=first if first is not None else float("nan"),
        first_connected=connected if connected is not None else float("nan"),
        samples=samples,
        complete=done >= forced,
        load=(load0, os.getloadavg()[0]),
    )


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(ours: float | None, theirs: float | None, *, lower_is_better: bool = False) -> str:
    if not ours or not theirs:
        return "-"
    return f"{(theirs / ours if lower_is_better else ours / theirs):.1f}x"


def render(
    results: dict[tuple[str, int], Drain], combos: list[str], depths: list[int]
) -> list[str]:
    lines = []
    head = "| pending asked | system | pending got (forced in) | first build (after the "
    head += "first worker connected) | overall |"
    head += "".join(f" {10 * i}-{10 * (i + 1)}% |" for i in range(SLICES))
    lines += [head, "|" + "---|" * (5 + SLICES)]
    for depth in depths:
        for combo in combos:
            d = results.get((combo, depth))
            if d is None:
                continue
            cut = "" if d.complete else f" (cut short: {d.drained} drained)"
            row = (
                f"| {depth} | {COMBINATIONS[combo][2]} | {d.pending} ({d.force_seconds:.0f} s) "
                f"| {d.first_build:.2f} s ({d.first_build - d.first_connected:.2f} s) "
                f"| {d.overall():.1f}/s{cut} |"
            )
            row += "".join(f" {_rate(r)} |" for r in d.slices())
            lines.append(row)
    lines.append("")
    lines.append("ratios (buildyard / Buildbot; first build: Buildbot's time / ours):")
    for depth in depths:
        ours, theirs = results.get(("buildyard", depth)), results.get(("buildbot", depth))
        if ours and theirs:
            lines.append(
                f"  {depth} pending: drain {_ratio(ours.overall(), theirs.overall())}, "
                f"first build {_ratio(ours.first_build, theirs.first_build, lower_is_better=True)}"
            )
    for combo in combos:
        got = [results[(combo, d)] for d in depths if (combo, d) in results]
        if len(got) >= 2 and got[0].overall():
            lines.append(
                f"  {COMBINATIONS[combo][2]}: drain at {got[-1].pending} pending / at "
                f"{got[0].pending}: {got[-1].overall() / got[0].overall():.2f}"
            )
    return lines


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", default="200,10000", help="comma-separated queue depths")
    parser.add_argument("--in-flight", type=int, default=8, help="force requests outstanding")
    parser.add_argument("--force-within", type=float, default=300.0, help="seconds to force")
    parser.add_argument("--drain-within", type=float, default=600.0, help="seconds to drain")
    parser.add_argument("--poll-ms", type=float, default=20.0)
    parser.add_argument("--combinations", default="buildyard,buildbot")
    parser.add_argument("--quiet-buildbot", action="store_true", help="no msgpack debug log")
    parser.add_argument("--keep", action="store_true", help="keep the masters' directories")
    args = parser.parse_args()
    combos = args.combinations.split(",")
    if unknown := set(combos) - set(COMBINATIONS):
        parser.error(f"unknown combinations: {sorted(unknown)}")
    depths = [int(p) for p in args.pending.split(",")]
    results: dict[tuple[str, int], Drain] = {}
    for depth in depths:
        for combo in combos:  # alternating: each depth on every system before the next
            kind, worker_kind, label = COMBINATIONS[combo]
            root = Path(tempfile.mkdtemp(prefix="buildyard-deep-"))
            try:
                t0 = time.monotonic()
                drain = results[(combo, depth)] = await measure(
                    kind, worker_kind, root, depth, args
                )
                print(
                    f"# {label}, {depth} pending: {time.monotonic() - t0:.0f}s, load average "
                    f"{drain.load[0]:.2f} -> {drain.load[1]:.2f}",
                    flush=True,
                )
            finally:
                if args.keep:
                    print(f"# kept {root}", flush=True)
                else:
                    shutil.rmtree(root, ignore_errors=True)
    print(
        f"pending={args.pending} in_flight={args.in_flight} force_within={args.force_within} "
        f"drain_within={args.drain_within} workers={WORKERS} poll_ms={args.poll_ms} "
        f"cpus={os.cpu_count()}"
    )
    for line in render(results, combos, depths):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

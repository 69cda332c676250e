"""The distributor's drain (a clean shutdown): it returns only once the pass under way is over
and every build has ended, so a build that a pass was starting when the hold began is waited
for too, even if the last other build ends in the middle of that pass."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from buildyard.master.distributor.distributor import BuildRequestDistributor


def _distributor() -> BuildRequestDistributor:
    mq: Any = SimpleNamespace()
    workers: Any = SimpleNamespace(latent=SimpleNamespace())
    updates: Any = None
    db: Any = None
    return BuildRequestDistributor(
        updates=updates, db=db, mq=mq, workers=workers, masterid=lambda: 1
    )


async def test_drain_waits_for_the_pass_under_way_even_when_the_last_build_ends_in_it() -> None:
    brd = _distributor()
    in_pass, release, started = asyncio.Event(), asyncio.Event(), asyncio.Event()
    build: Any = object()

    async def a_slow_pass() -> None:  # stands for a pass claiming a request, then starting it
        in_pass.set()
        await release.wait()
        brd._build_tasks[build] = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
        started.set()

    brd.distribute = a_slow_pass  # type: ignore[method-assign]
    running: Any = object()
    brd._build_tasks[running] = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    passes = asyncio.create_task(brd._run())
    try:
        brd.maybe_start_builds()
        await asyncio.wait_for(in_pass.wait(), 10)
        drain = asyncio.create_task(brd.drain())
        await asyncio.sleep(0)
        assert brd.hold
        # the one running build ends in the middle of the pass (as _run_build's end does)
        del brd._build_tasks[running]
        brd._settled.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert not drain.done(), "drain returned while a pass was still starting a build"
        # the pass ends, having started one more build: drain waits for it as well
        release.set()
        await asyncio.wait_for(started.wait(), 10)
        for _ in range(20):
            await asyncio.sleep(0)
        assert not drain.done()
        del brd._build_tasks[build]
        brd._settled.set()
        await asyncio.wait_for(drain, 10)
    finally:
        passes.cancel()
        await asyncio.gather(passes, return_exceptions=True)

"""What the cloud stand-ins (:mod:`~buildyard.testing.kube_api`,
:mod:`~buildyard.testing.openstack_cloud`) run as an instance: a real process, in a directory
of its own, with the instance's environment, in its own session so that ending it ends what it
started; and how every engine stand-in (these and :mod:`~buildyard.testing.docker_engine`)
serves until it is told to stop (:func:`serve_until_stopped`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiohttp import web


class InstanceProcess:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: asyncio.subprocess.Process | None = None
        self.log = root / "instance.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def start(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.root,
                env={**os.environ, **env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    async def end(self, grace: float) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def serve_until_stopped(runner: web.AppRunner, site: web.BaseSite) -> None:
    """Serve ``site`` (of the set-up ``runner``) until SIGTERM or SIGINT; ``ready <time>`` on
    stdout once it accepts connections (what the tests wait for)."""
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {time.time()}", flush=True)
    await stop.wait()
    await runner.cleanup()

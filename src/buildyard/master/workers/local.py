"""The processes of ``worker.LocalWorker``: a buildyard-worker per local worker, run by the master.

Each runs as a child process (``buildyard-worker start --nodaemon``) in
``<master basedir>/workers/<workdir>`` (Buildbot's place), connected to the master's
msgpack_experimental_v7 listener over loopback with the worker's generated password, like any
worker: builds reach it through the normal protocol. A child process rather than a worker inside
the master: its commands, output and transfers cannot stall the master's event loop, and it is
stopped, lost and reconnected exactly as a remote worker is.

Its stdin is a pipe whose other end only the master holds: when the master dies, even by
SIGKILL, the worker sees the end of its stdin and stops (``--exit-with-stdin``). On master stop
and when removed by a reconfig it gets SIGTERM (SIGKILL after :data:`STOP_TIMEOUT`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from buildyard.common.service import Service
from buildyard.master.workers.config import LocalWorker

log = structlog.get_logger(__name__)

STOP_TIMEOUT = 30.0
LOGFILE = "buildyard-worker.log"


class _Running:
    def __init__(self, config: LocalWorker, basedir: Path, port: int, host: str) -> None:
        self.config = config
        self.basedir = basedir
        self.port = port
        self.host = host
        self.proc: asyncio.subprocess.Process | None = None

    def key(self) -> tuple[object, ...]:
        return (self.config, self.basedir, self.port, self.host)


class LocalWorkers(Service):
    """The running local workers; :meth:`apply` makes them match a configuration."""

    def __init__(self, *, master_basedir: Path) -> None:
        super().__init__("_local")  # "_": no worker name can clash
        self.master_basedir = master_basedir
        self.running_workers: dict[str, _Running] = {}

    def pid(self, name: str) -> int | None:
        running = self.running_workers.get(name)
        return running.proc.pid if running is not None and running.proc is not None else None

    async def apply(self, workers: Sequence[object], *, host: str, port: int | None) -> None:
        """Start the local workers of ``workers`` that are not running, stop those no longer
        there, and restart those whose settings or master address changed or whose process
        ended."""
        wanted: dict[str, _Running] = {}
        if port is not None:
            for w in workers:
                if isinstance(w, LocalWorker):
                    basedir = self.master_basedir / "workers" / w.workdir
                    wanted[w.name] = _Running(w, basedir, port, host)
        for name, running in list(self.running_workers.items()):
            new = wanted.get(name)
            ended = running.proc is not None and running.proc.returncode is not None
            if new is None or new.key() != running.key() or ended:
                await self._stop_one(name)
        for name, new in wanted.items():
            if name not in self.running_workers:
                await self._start_one(new)

    async def _start_one(self, running: _Running) -> None:
        cfg = running.config
        running.basedir.mkdir(parents=True, exist_ok=True)
        argv = ["create-worker", "--quiet", str(running.basedir)]
        argv += [f"{running.host}:{running.port}", cfg.name, str(cfg.login_password)]
        # the worker's package only for a master that has local workers
        from buildyard.worker import cli as worker_cli

        if worker_cli.main(argv) != 0:
            raise RuntimeError(f"local worker {cfg.name!r}: create-worker failed")
        out = (running.basedir / LOGFILE).open("ab")
        try:
            running.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "buildyard.worker.cli",
                "start",
                "--nodaemon",
                "--exit-with-stdin",
                str(running.basedir),
                stdin=asyncio.subprocess.PIPE,
                stdout=out,
                stderr=out,
                cwd=running.basedir,
                start_new_session=True,  # a ^C in the master's terminal is the master's
            )
        finally:
            out.close()
        self.running_workers[cfg.name] = running
        log.info(
            "local_worker_started",
            worker=cfg.name,
            pid=running.proc.pid,
            basedir=str(running.basedir),
        )
        _ = self.spawn(self._watch(cfg.name, running.proc), name=f"local:{cfg.name}")

    async def _watch(self, name: str, proc: asyncio.subprocess.Process) -> None:
        """Log a worker process that ends while it should run (it is not started again: its
        log, ``<workdir>/buildyard-worker.log``, says why; the next reconfig or a restart of
        the master starts it again)."""
        code = await proc.wait()
        running = self.running_workers.get(name)
        if running is not None and running.proc is proc:
            log.error(
                "local_worker_exited",
                worker=name,
                pid=proc.pid,
                returncode=code,
                log=str(running.basedir / LOGFILE),
            )

    async def _stop_one(self, name: str) -> None:
        running = self.running_workers.pop(name)
        proc = running.proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await proc.wait()
            except TimeoutError:
                log.warning("local_worker_killed", worker=name, pid=proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        log.info("local_worker_stopped", worker=name, pid=proc.pid, returncode=proc.returncode)

    async def stop_service(self) -> None:
        for name in list(self.running_workers):
            await self._stop_one(name)

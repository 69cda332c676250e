"""Running buildyard's command line as a user would, as real subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path


def buildyard(
    *args: str,
    timeout: float = 120,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``buildyard ARGS`` to completion and return its result (never raises on exit code);
    ``env``, when given, is the whole environment of the command."""
    return subprocess.run(
        [sys.executable, "-m", "buildyard.cli.main", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def spawn_master(basedir: Path) -> subprocess.Popen[bytes]:
    """``buildyard start --nodaemon BASEDIR`` in the background, its output in basedir/out.log.

    End it with :func:`end_popen`.
    """
    with (basedir / "out.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "buildyard.cli.main", "start", "--nodaemon", str(basedir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def end_popen(proc: subprocess.Popen[bytes], *, timeout: float = 30) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; reaps the process and returns its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def end_process(pid: int, *, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; returns once the process is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            waited = 0
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        if waited == pid:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def ended_at_exit(pids: Callable[[], Sequence[int]]) -> Iterator[None]:
    """Whatever happens in the block, end every process ``pids()`` names afterwards."""
    try:
        yield
    finally:
        for pid in pids():
            end_process(pid)


def wait_for(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], *, within: float, interval: float = 0.05
) -> None:
    """Wait until ``predicate()`` holds (it may be a coroutine function), for state that no
    event announces; TimeoutError after ``within`` seconds."""

    async def holds() -> bool:
        result = predicate()
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    async with asyncio.timeout(within):
        while not await holds():  # noqa: ASYNC110  (nothing to wait on but the state itself)
            await asyncio.sleep(interval)

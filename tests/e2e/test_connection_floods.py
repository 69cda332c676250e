"""A real master process with few open files (RLIMIT_NOFILE set on it before it starts) under
more idle connections than it has files, on both ports: it still answers REST, a real worker
still connects and builds, and its log stays small (asyncio logged a traceback per failed
accept, 100 a second, and aiohttp one per malformed request).

Two ways through: the default cap on pending connections (an eighth of the open-file limit)
closes the longest-pending ones before the files run out; with a cap above the limit, accepts
fail for want of files (EMFILE) and each failure sheds the older half of the pending ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, end_popen, eventually
from buildyard.testing.workers import start_worker

pytestmark = pytest.mark.e2e

# what the master gets: a soft limit it raises to the hard one, both far below the flood
SOFT, HARD = 128, 256
FLOOD = 400  # idle connections to each port
LOG_BOUND = 64 * 1024  # bytes the master may log in the whole test (it logs about 3 KB)

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'msgpack_experimental_v7': {{
    'port': {port}, 'interface': '127.0.0.1', {limits}}}}}
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1', {limits}}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
    steps.ShellCommand(name="hello", command=["echo", "hello"]),
]))]
c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
"""


@contextlib.contextmanager
def _master(basedir: Path) -> Iterator[subprocess.Popen[bytes]]:
    with (basedir / "out.log").open("ab") as out:
        proc = subprocess.Popen(
            # the limits are set by the shell that then becomes the master
            [
                "/bin/sh",
                "-c",
                f'ulimit -S -n {SOFT} && ulimit -H -n {HARD} && exec "$@"',
                "sh",
                sys.executable,
                "-m",
                "buildyard.cli.main",
                "start",
                "--nodaemon",
                str(basedir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        end_popen(proc)


@contextlib.contextmanager
def _files_for_the_flood() -> Iterator[None]:
    """This process holds the flood's client ends: as many files as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * FLOOD + 200:
        pytest.skip(f"the flood needs {2 * FLOOD + 200} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.asynccontextmanager
async def _idle_connections(
    port: int, count: int
) -> AsyncIterator[list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]:
    """``count`` connections that send nothing (each connect bounded: on a master that stopped
    accepting, the kernel's queue fills and further connects hang)."""
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    slots = asyncio.Semaphore(32)

    async def one() -> None:
        async with slots:
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(5):
                    opened.append(await asyncio.open_connection("127.0.0.1", port))

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(count):
                tg.create_task(one())
        yield opened
    finally:
        for _, writer in opened:
            writer.transport.abort()


def _closed(opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> int:
    """How many the master closed (an end of file, or a reset)."""
    return sum(1 for reader, _ in opened if reader.at_eof() or reader.exception() is not None)


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with asyncio.timeout(60), session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json(content_type=None)


@pytest.mark.parametrize(
    "limits",
    [
        pytest.param("", id="default-cap"),
        pytest.param("'max_pending_connections': 2000", id="cap-above-the-file-limit"),
    ],
)
async def test_more_idle_connections_than_open_files_leave_rest_and_builds_working(
    tmp_path: Path, limits: str
) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    port, www = free_port(), free_port()
    (basedir / "master.cfg").write_text(CONFIG.format(port=port, www=www, limits=limits))
    assert buildyard("upgrade-master", str(basedir)).returncode == 0
    log = basedir / "out.log"
    api = f"http://127.0.0.1:{www}/api/v2"
    worker: subprocess.Popen[bytes] | None = None
    with _files_for_the_flood(), _master(basedir) as master:
        try:
            await eventually(
                lambda: "master_started" in log.read_text() or master.poll() is not None,
                within=60,
            )
            assert master.poll() is None, log.read_text()
            # the master raised its soft limit to the hard one
            assert re.search(rf"open_file_limit\s.*hard={HARD}\s.*soft={HARD}", log.read_text())
            async with (
                _idle_connections(www, FLOOD) as web_idle,
                _idle_connections(port, FLOOD) as worker_idle,
            ):
                # the master accepted more connections than it has files, and closed them
                await eventually(lambda: _closed(web_idle) + _closed(worker_idle) > HARD, within=60)
                async with aiohttp.ClientSession() as session:
                    [builder] = (await _get(session, f"{api}/builders"))["builders"]
                    worker = await asyncio.to_thread(
                        start_worker, "buildyard", tmp_path / "worker", port, "w1", "pw"
                    )

                    async def attached() -> bool:
                        found = await _get(session, f"{api}/workers/w1")
                        return bool(found["workers"][0]["connected_to"])

                    await eventually(attached, within=120, interval=0.5)
                    rpc = {
                        "jsonrpc": "2.0",
                        "method": "force",
                        "id": 1,
                        "params": {"builderid": builder["builderid"], "reason": "flood"},
                    }
                    async with (
                        asyncio.timeout(60),
                        session.post(f"{api}/forceschedulers/force", json=rpc) as resp,
                    ):
                        assert resp.status == 200, await resp.text()

                    async def built() -> bool:
                        builds = (await _get(session, f"{api}/builds"))["builds"]
                        return [(b["complete"], b["results"]) for b in builds] == [(True, 0)]

                    await eventually(built, within=120, interval=0.5)
        finally:
            if worker is not None:
                end_popen(worker)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-5000:]
    assert log.stat().st_size < LOG_BOUND, text[-5000:]
    if limits:  # the files ran out, and that was said in a line, not a line per retry
        failures = [line for line in text.splitlines() if "accept_failed" in line]
        assert 1 <= len(failures) <= 10, failures  # one per 30 s: 258,460 tracebacks on main

"""Downloading a 500 MB log from a master process: its memory stays flat.

docs/rest-api.md, "Log contents".
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from buildyard.master.db import migrate
from buildyard.master.db.connector import Database
from buildyard.master.model.logs import LogType
from buildyard.testing.clock import FakeClock
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually, spawn_master
from tests.master.db import _rows

pytestmark = pytest.mark.e2e

MEGABYTES = 500
LINE = 100  # bytes of text per line, newline included (plus its stream letter when stored)
APPEND_LINES = 40_000  # 4 MB per append

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {worker_port}, 'interface': '127.0.0.1'}}}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory())]
c['www'] = {{'port': 'tcp:{port}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def _line(i: int) -> str:
    return f"{i:09d} " + "x" * (LINE - 11) + "\n"


def _rss(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def _fill(basedir: Path) -> tuple[int, int]:
    """A stdio log of MEGABYTES MB in the master's database: (logid, lines)."""
    database = Database("sqlite:///state.sqlite", clock=FakeClock(), basedir=basedir)
    try:
        await migrate.upgrade(database)
        _builderid, _buildid, stepid = await _rows.add_running_step(database)
        logid = await database.logs.add_log(stepid, "stdio", "stdio", LogType.STDIO)
        lines = MEGABYTES * 1_000_000 // LINE
        for first in range(0, lines, APPEND_LINES):
            block = "".join(f"o{_line(i)}" for i in range(first, min(first + APPEND_LINES, lines)))
            await database.logs.append_log(logid, block, compression="zstd")
        await database.logs.finish_log(logid)
        return logid, lines
    finally:
        await database.close()


async def test_a_500_mb_raw_download_keeps_the_master_memory_flat(tmp_path: Path) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    port = free_port()
    (basedir / "master.cfg").write_text(CONFIG.format(port=port, worker_port=free_port()))
    logid, lines = await _fill(basedir)
    master = spawn_master(basedir)
    try:
        base = f"http://127.0.0.1:{port}/api/v2"
        async with aiohttp.ClientSession() as http:

            async def serving() -> bool:
                try:
                    async with http.get(f"{base}/logs/{logid}") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(serving, within=60)
            before = _rss(master.pid)
            peak = before
            received = 0
            head = b""
            async with http.get(f"{base}/logs/{logid}/raw") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Disposition"].startswith("attachment; filename=")
                next_sample = 0
                async with asyncio.timeout(300):
                    async for piece in resp.content.iter_chunked(1 << 20):
                        if len(head) < 4096:
                            head += piece[:4096]
                        received += len(piece)
                        if received >= next_sample:
                            peak = max(peak, _rss(master.pid))
                            next_sample += 10 << 20
            peak = max(peak, _rss(master.pid))
        preamble, _, rest = head.decode().partition("\nWorker name: ")
        assert preamble.startswith("Builder: b\nBuild number: ")
        worker_line, _, text = rest.partition("\n")
        assert text.startswith(_line(0) + _line(1))  # the stream letters are dropped
        header = len(preamble) + len("\nWorker name: ") + len(worker_line) + 1
        assert received == header + lines * LINE  # every line, whole
        growth = peak - before
        assert growth < 50 << 20, f"the master grew by {growth >> 20} MB"
    finally:
        end_popen(master)

"""What a real worker of either kind must not be able to do to the master: put its data in the
master's log, hang it by going silent, or (buildyard-worker) leave tarballs behind.

Real processes on loopback, an in-process master, workers ended by their pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import logging
import os
import resource
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import structlog

from buildyard.common.logging import configure
from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.db import schema as t
from buildyard.master.master import BuildMaster
from buildyard.master.workers.connection import WorkerConnection
from buildyard.protocol.errors import ConnectionLost
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually
from buildyard.testing.workers import KINDS, STOCK_PB, start_worker

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw", keepalive_interval={keepalive})]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}},
                   'pb': {{'port': {pb_port}, 'interface': '127.0.0.1'}}}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory())]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""

# the master's keepalive interval in the silent-worker test: it sends a keepalive after this
# long without traffic and drops the worker if the answer takes longer than this again
KEEPALIVE = 2.0


@contextlib.asynccontextmanager
async def running_master(tmp_path: Path, *, keepalive: float | None) -> AsyncIterator[BuildMaster]:
    basedir = tmp_path / "master"
    basedir.mkdir()
    (basedir / "master.cfg").write_text(
        CONFIG.format(port=free_port(), pb_port=free_port(), keepalive=keepalive)
    )
    master = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(master.db)
    await master.start()
    try:
        yield master
    finally:
        await master.stop()


async def attached(master: BuildMaster, workdir: Path, *, other_than: object = None) -> None:
    """Wait until w1 is attached (a connection other than ``other_than``), set up, and shown
    connected in the database (the row is written once the connect sequence is over, which may
    be after the connection is listed)."""
    listener = master.workers.listener

    async def ready() -> bool:
        conn = listener.connections.get("w1")
        if conn is None or conn is other_than or not (workdir / "b").is_dir():
            return False
        return await connected_count(master) >= 1

    await eventually(ready, within=60)


async def connected_count(master: BuildMaster) -> int:
    async with master.db.reading() as c:
        query = sa.select(sa.func.count()).select_from(t.connected_workers)
        return int((await c.execute(query)).scalar_one())


async def launch(kind: str, workdir: Path, master: BuildMaster) -> subprocess.Popen[bytes]:
    listener = master.workers.listener
    port = listener.pb_port if kind == STOCK_PB else listener.port
    assert port is not None
    return await asyncio.to_thread(start_worker, kind, workdir, port, "w1", "pw")


def kill_pid_in(pidfile: Path) -> None:
    with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


# -- 1. message bodies never reach the master's log ----------------------------------------------


@contextlib.contextmanager
def everything_the_master_logs() -> Iterator[io.StringIO]:
    """The master's structlog output, rendered by its own configuration at DEBUG, and every
    stdlib logger (aiohttp, asyncio, sqlalchemy, aiosqlite, ...) at DEBUG, into one buffer."""
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    root = logging.getLogger()
    saved_level = root.level
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    configure(level=logging.DEBUG)  # the processors and renderer a master process uses
    # ...writing here, and without caching loggers that outlive this block
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=out), cache_logger_on_first_use=False
    )
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


@pytest.mark.parametrize("kind", [*KINDS, STOCK_PB])
async def test_message_bodies_never_reach_the_masters_log(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex
    markers = {
        # the command prints it from two halves: only its output holds the marker whole
        "stdout": f"STDOUT-SECRET-{tag}",
        "upload_file": f"UPLOAD-SECRET-{tag}",
        "upload_directory": f"TARBALL-SECRET-{tag}",
        "download_file": f"DOWNLOAD-SECRET-{tag}",
        "worker_environ": f"ENVIRON-SECRET-{tag}",
        "command_env": f"COMMAND-ENV-SECRET-{tag}",
    }
    # the worker process inherits it, and sends its whole environment in get_worker_info
    monkeypatch.setenv("BUILDYARD_TEST_SECRET", markers["worker_environ"])
    workdir = tmp_path / "worker"
    proc: subprocess.Popen[bytes] | None = None
    with everything_the_master_logs() as out:
        try:
            async with running_master(tmp_path, keepalive=None) as master:
                proc = await launch(kind, workdir, master)
                await attached(master, workdir)
                conn = master.workers.listener.connections["w1"]
                b = workdir / "b"

                # each marker really went through the master
                environ = conn.info.get("environ")
                assert isinstance(environ, dict)
                assert environ.get("BUILDYARD_TEST_SECRET") == markers["worker_environ"]

                half = len("STDOUT-SECRET-")
                shell = await conn.run_command(
                    "shell",
                    {
                        "workdir": str(b),
                        "command": [
                            "printf",
                            "%s%s\\n",
                            markers["stdout"][:half],
                            markers["stdout"][half:],
                        ],
                        "env": {"BUILDYARD_COMMAND_SECRET": markers["command_env"]},
                    },
                )
                assert shell.rc == 0
                assert shell.text("stdout") == markers["stdout"] + "\n"

                (b / "up.txt").write_text(markers["upload_file"])
                up = await conn.upload_file(str(b / "up.txt"), tmp_path / "up.txt")
                assert up.rc == 0, up.text("stderr")
                assert (tmp_path / "up.txt").read_text() == markers["upload_file"]

                (b / "tree").mkdir()
                (b / "tree" / "inside.txt").write_text(markers["upload_directory"])
                tree = await conn.upload_directory(str(b / "tree"), tmp_path / "tree")
                assert tree.rc == 0, tree.text("stderr")
                assert (tmp_path / "tree" / "inside.txt").read_text() == markers["upload_directory"]

                source = tmp_path / "down.txt"
                source.write_text(markers["download_file"])
                down = await conn.download_file(source, str(b / "down.txt"))
                assert down.rc == 0, down.text("stderr")
                assert (b / "down.txt").read_text() == markers["download_file"]
        finally:
            if proc is not None:
                end_popen(proc)
        log = out.getvalue()

    # the capture works: it holds the master's own events and stdlib loggers' records
    assert "worker_attached" in log and "worker=w1" in log, log[-3000:]
    assert "worker_disconnected" in log, log[-3000:]
    assert "DEBUG " in log, log[-3000:]  # a stdlib record, through the handler
    leaked = {name: m for name, m in markers.items() if m in log}
    assert not leaked, f"the master logged message bodies: {sorted(leaked)}"


# -- 2. a silent worker is dropped within the keepalive window -----------------------------------


@pytest.mark.parametrize("kind", [*KINDS, STOCK_PB])
async def test_a_silent_worker_is_dropped_within_the_keepalive_window(
    kind: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "worker"
    pidfile = tmp_path / "sleep.pid"
    async with running_master(tmp_path, keepalive=KEEPALIVE) as master:
        proc = await launch(kind, workdir, master)
        try:
            await attached(master, workdir)
            listener = master.workers.listener
            conn = listener.connections["w1"]
            assert await connected_count(master) == 1
            run = asyncio.create_task(
                conn.run_command(
                    "shell",
                    {
                        "workdir": str(workdir / "b"),
                        "command": f"sleep 60 & echo $! > {pidfile}; wait",
                        "logEnviron": False,
                    },
                )
            )
            await eventually(lambda: pidfile.exists() and bool(pidfile.read_text()), within=30)

            # the process stays, its socket stays open; only its answers stop
            os.kill(proc.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            with pytest.raises(ConnectionLost, match="worker w1 lost"):
                await asyncio.wait_for(run, 4 * KEEPALIVE)
            noticed = time.monotonic() - stopped
            # only a keepalive unanswered for a whole interval drops it, at most one interval
            # after the previous one was answered
            # (slack for a loaded machine on top of the two intervals)
            assert KEEPALIVE * 0.9 <= noticed <= 2 * KEEPALIVE + 5, noticed

            # recorded as disconnected, and forgotten, within the same window
            async with asyncio.timeout(2 * KEEPALIVE + 6 - (time.monotonic() - stopped)):
                # a database row: no event to wait on in this test
                while await connected_count(master) != 0 or "w1" in listener.connections:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

            # the master serves on: the same worker, resumed, comes back and runs commands
            os.kill(proc.pid, signal.SIGCONT)
            await attached(master, workdir, other_than=conn)
            again = listener.connections["w1"]
            echo = await again.run_command(
                "shell",
                {"workdir": str(workdir / "b"), "command": "echo back", "logEnviron": False},
            )
            assert echo.rc == 0 and echo.text("stdout") == "back\n"
            assert await connected_count(master) == 1
            assert proc.poll() is None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            end_popen(proc)
            kill_pid_in(pidfile)


@pytest.mark.parametrize("kind", [*KINDS, STOCK_PB])
async def test_stopping_the_master_drops_its_workers_at_once(kind: str, tmp_path: Path) -> None:
    """A connected worker does not hold up the master's stop (aiohttp's cleanup would wait for
    its handler, 60 s and then 60 s more), and its disconnection is still recorded."""
    workdir = tmp_path / "worker"
    proc: subprocess.Popen[bytes] | None = None
    try:
        with structlog.testing.capture_logs() as logs:
            async with running_master(tmp_path, keepalive=None) as master:
                proc = await launch(kind, workdir, master)
                await attached(master, workdir)
                began = time.monotonic()
            took = time.monotonic() - began
        assert took < 10, took
        events = [e["event"] for e in logs]
        assert "worker_disconnected" in events
        assert events.index("worker_disconnected") < events.index("master_stopped")
        assert proc.poll() is None  # the worker was dropped, not stopped
    finally:
        if proc is not None:
            end_popen(proc)


# -- 3. buildyard-worker removes its tarball when packing fails or is interrupted ----------------


@pytest.fixture
async def packing_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[WorkerConnection, Path, Path, subprocess.Popen[bytes]]]:
    """buildyard-worker with a temporary directory of its own (where its tarballs go): the
    connection, the worker's directory, its TMPDIR and its process."""
    tmpdir = tmp_path / "worker-tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))  # inherited by the worker process
    workdir = tmp_path / "worker"
    async with running_master(tmp_path, keepalive=None) as master:
        proc = await launch("buildyard", workdir, master)
        try:
            await attached(master, workdir)
            yield master.workers.listener.connections["w1"], workdir, tmpdir, proc
        finally:
            end_popen(proc)


def tarballs(tmpdir: Path) -> list[str]:
    return sorted(p.name for p in tmpdir.iterdir())


async def test_an_interrupted_packing_leaves_no_tarball(
    packing_worker: tuple[WorkerConnection, Path, Path, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    conn, workdir, tmpdir, _proc = packing_worker
    tree = workdir / "b" / "tree"
    tree.mkdir()
    for i in range(400):  # ~4 s of bz2 packing, checked for an interrupt at each file
        (tree / f"f{i:04}").write_bytes(os.urandom(64 * 1024))
    dest = tmp_path / "dest"
    run = asyncio.create_task(conn.upload_directory(str(tree), dest, compress="bz2"))
    # the tarball is there: packing has begun (and this is where it goes)
    await eventually(lambda: bool(tarballs(tmpdir)), within=30, interval=0.005)
    (name,) = tarballs(tmpdir)
    assert name.startswith("buildyard-upload-")
    (command_id,) = conn.running_ids()
    await conn.interrupt(command_id, "test says stop")
    result = await asyncio.wait_for(run, 30)
    assert result.rc == 1
    assert "interrupted while packing" in result.text("stderr")
    assert tarballs(tmpdir) == []
    assert not dest.exists() or list(dest.iterdir()) == []  # nothing half-uploaded either


async def test_a_failed_packing_leaves_no_tarball(
    packing_worker: tuple[WorkerConnection, Path, Path, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    conn, workdir, tmpdir, proc = packing_worker
    tree = workdir / "b" / "tree"
    tree.mkdir()
    (tree / "big.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    # root reads every file, so packing is made to fail at writing: the worker may not write a
    # file past 512 KiB (Python ignores SIGXFSZ, so the write raises EFBIG); its log is smaller
    soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (512 * 1024, hard))
    try:
        failed = await conn.upload_directory(str(tree), tmp_path / "failed")
    finally:
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (soft, hard))
    assert failed.rc == 1
    stderr = failed.text("stderr")
    assert "Cannot pack directory" in stderr and os.strerror(errno.EFBIG) in stderr, stderr
    assert tarballs(tmpdir) == []
    assert list((tmp_path / "failed").iterdir()) == []

    # the limit lifted, the same upload goes through, and its tarball goes too
    done = await conn.upload_directory(str(tree), tmp_path / "done")
    assert done.rc == 0, done.text("stderr")
    assert (tmp_path / "done" / "big.bin").read_bytes() == (tree / "big.bin").read_bytes()
    assert tarballs(tmpdir) == []

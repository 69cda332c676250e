"""The master's command layer against every worker: the stock buildbot-worker 4.3.0 on
msgpack and on PB (created with its defaults), the newest stock buildbot-worker of the 3.x line
(3.11.9, created with its defaults: PB), and buildyard-worker: real processes, real files, the
same expectations (where the 3.x worker differs, the test says where its own code documents it)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import stat
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.master.workers.connection import WorkerConnection
from buildyard.protocol.errors import ConnectionLost
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually
from buildyard.testing.workers import KINDS, STOCK3_PB, STOCK_PB, start_worker

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}},
                   'pb': {{'port': 'tcp:{pb_port}:interface=127.0.0.1'}}}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory())]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


@pytest.fixture(params=(*KINDS, STOCK_PB, STOCK3_PB))
async def worker(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[WorkerConnection, Path, subprocess.Popen[bytes]]]:
    """A connected, attached worker of each kind, its base directory and its process."""
    basedir = tmp_path / "master"
    basedir.mkdir()
    port, pb_port = free_port(), free_port()
    (basedir / "master.cfg").write_text(CONFIG.format(port=port, pb_port=pb_port))
    master = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(master.db)
    await master.start()
    workdir = tmp_path / "worker"
    to = pb_port if request.param in (STOCK_PB, STOCK3_PB) else port
    proc = await asyncio.to_thread(start_worker, request.param, workdir, to, "w1", "pw")
    try:
        listener = master.workers.listener
        await eventually(
            lambda: "w1" in listener.connections and (workdir / "b").is_dir(), within=60
        )
        yield listener.connections["w1"], workdir, proc
    finally:
        end_popen(proc)
        await master.stop()


async def test_shell_and_filesystem_commands(
    worker: tuple[WorkerConnection, Path, subprocess.Popen[bytes]],
) -> None:
    conn, base, _proc = worker
    b = str(base / "b")
    shell = await conn.run_command(
        "shell",
        {
            "workdir": b,
            "command": ["sh", "-c", 'echo "out $GREETING"; echo err >&2; exit 3'],
            "env": {"GREETING": "hello"},
            "logEnviron": False,
        },
    )
    assert shell.failure is None
    assert shell.rc == 3
    assert shell.text("stdout") == "out hello\n"
    assert shell.text("stderr") == "err\n"
    assert isinstance(shell.last("elapsed"), float)

    # output streamed to a consumer without being kept (what a step writing a log does)
    streamed: list[str] = []
    quiet = await conn.run_command(
        "shell",
        {"workdir": b, "command": ["sh", "-c", "seq 1 3000"], "logEnviron": False},
        on_update=lambda u: streamed.append(u[1][0]) if u[0] == "stdout" else None,
        keep_output=False,
    )
    assert quiet.rc == 0
    assert quiet.text("stdout") == ""  # nothing kept
    assert "".join(streamed).split() == [str(i) for i in range(1, 3001)]

    made = await conn.run_command("mkdir", {"paths": [f"{b}/d1/d2"]})
    assert made.rc == 0 and (base / "b" / "d1" / "d2").is_dir()
    (base / "b" / "d1" / "f.txt").write_text("12345")
    st = await conn.run_command("stat", {"path": f"{b}/d1/f.txt"})
    assert st.rc == 0 and st.last("stat")[stat.ST_SIZE] == 5
    listed = await conn.run_command("listdir", {"path": f"{b}/d1"})
    assert sorted(listed.last("files")) == ["d2", "f.txt"]
    globbed = await conn.run_command("glob", {"path": f"{b}/d1/*.txt"})
    assert globbed.last("files") == [f"{b}/d1/f.txt"]
    copied = await conn.run_command("cpdir", {"from_path": f"{b}/d1", "to_path": f"{b}/copy"})
    assert copied.rc == 0 and (base / "b" / "copy" / "f.txt").read_text() == "12345"
    removed = await conn.run_command("rmfile", {"path": f"{b}/d1/f.txt"})
    assert removed.rc == 0 and not (base / "b" / "d1" / "f.txt").exists()
    gone = await conn.run_command("rmdir", {"paths": [f"{b}/d1", f"{b}/copy"]})
    assert gone.rc == 0 and not (base / "b" / "d1").exists()
    missing = await conn.run_command("stat", {"path": f"{b}/nope"})
    assert missing.rc == 2  # ENOENT

    # whatever the protocol, the master's socket has Nagle off and (Linux) acknowledges each
    # read at once: the stock worker (Twisted) keeps Nagle on (buildyard.protocol.tcp)
    assert conn.tcp is not None and conn.tcp.nodelay
    if hasattr(socket, "TCP_QUICKACK"):
        assert conn.tcp.quickacks > 0


async def test_interrupt_kills_the_process_tree(
    worker: tuple[WorkerConnection, Path, subprocess.Popen[bytes]],
) -> None:
    conn, base, _proc = worker
    pidfile = base / "child.pid"
    run = asyncio.create_task(
        conn.run_command(
            "shell",
            {
                "workdir": str(base / "b"),
                "command": f"sleep 300 & echo $! > {pidfile}; echo started; wait",
                "logEnviron": False,
            },
        )
    )
    await eventually(lambda: pidfile.exists() and bool(pidfile.read_text().strip()), within=30)
    child = int(pidfile.read_text())
    (command_id,) = conn.running_ids()
    await conn.interrupt(command_id, "test says stop")
    result = await asyncio.wait_for(run, 30)
    assert result.rc == -1
    header = result.text("header")
    assert "attempting to kill" in header
    assert "process killed by signal 9" in header
    await eventually(lambda: not _alive(child), within=10)  # the shell's child died too


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_file_transfers_both_ways_byte_for_byte(
    worker: tuple[WorkerConnection, Path, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    conn, base, _proc = worker
    payload = os.urandom(1_000_003)  # several blocks, not a multiple of the block size

    source = tmp_path / "to-worker.bin"
    source.write_bytes(payload)
    down = await conn.download_file(source, f"{base}/b/sub/got.bin", mode=0o640)
    assert down.rc == 0, down.text("stderr")
    got = base / "b" / "sub" / "got.bin"
    assert _digest(got) == _digest(source)
    assert stat.S_IMODE(got.stat().st_mode) == 0o640

    stamped = base / "b" / "stamped.bin"
    stamped.write_bytes(payload[::-1])
    os.utime(stamped, (1_600_000_000.5, 1_500_000_000.25))
    up = await conn.upload_file(str(stamped), tmp_path / "up" / "stamped.bin", keepstamp=True)
    assert up.rc == 0, up.text("stderr")
    back = tmp_path / "up" / "stamped.bin"
    times = back.stat()  # before reading it, which may refresh atime
    assert times.st_mtime == pytest.approx(1_500_000_000.25, abs=1e-3)
    assert times.st_atime == pytest.approx(1_600_000_000.5, abs=1e-3)
    assert _digest(back) == _digest(stamped)

    capped = await conn.upload_file(str(stamped), tmp_path / "capped.bin", maxsize=1000)
    assert capped.rc == 1
    assert "Maximum filesize reached" in capped.text("stderr")
    assert (tmp_path / "capped.bin").read_bytes() == payload[::-1][:1000]

    tree = base / "b" / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "top.txt").write_text("top\n")
    (tree / "a" / "b" / "deep.bin").write_bytes(payload[:70_000])
    for compress in (None, "gz", "bz2"):
        dest = tmp_path / f"tree-{compress}"
        result = await conn.upload_directory(str(tree), dest, compress=compress)
        assert result.rc == 0, result.text("stderr")
        assert (dest / "top.txt").read_text() == "top\n"
        assert _digest(dest / "a" / "b" / "deep.bin") == _digest(tree / "a" / "b" / "deep.bin")
        assert sorted(p.name for p in dest.iterdir()) == ["a", "top.txt"]  # no temp left


async def test_a_worker_killed_mid_command_fails_it_as_lost(
    worker: tuple[WorkerConnection, Path, subprocess.Popen[bytes]],
) -> None:
    conn, base, proc = worker
    pidfile = base / "orphan.pid"
    run = asyncio.create_task(
        conn.run_command(
            "shell",
            {"workdir": str(base / "b"), "command": f"sleep 300 & echo $! > {pidfile}; wait"},
        )
    )
    await eventually(lambda: pidfile.exists() and bool(pidfile.read_text().strip()), within=30)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        with pytest.raises(ConnectionLost, match="worker w1 lost"):
            await asyncio.wait_for(run, 30)
    finally:
        # the worker's shell outlives it (its own process group); end it by its pid
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


@pytest.mark.parametrize(
    ("limit", "reason"), [("maxTime", "timeout"), ("timeout", "timeout_without_output")]
)
async def test_time_limits_kill_the_process_tree(
    worker: tuple[WorkerConnection, Path, subprocess.Popen[bytes]], limit: str, reason: str
) -> None:
    conn, base, _proc = worker
    pidfile = base / f"{limit}.pid"
    result = await asyncio.wait_for(
        conn.run_command(
            "shell",
            {
                "workdir": str(base / "b"),
                "command": f"sleep 300 & echo $! > {pidfile}; wait",
                limit: 1,
                "logEnviron": False,
            },
        ),
        60,
    )
    assert result.last("failure_reason") == reason
    assert result.rc == -1
    assert "attempting to kill" in result.text("header")
    await eventually(lambda: not _alive(int(pidfile.read_text())), within=10)


async def test_logfiles_max_lines_and_pty(
    worker: tuple[WorkerConnection, Path, subprocess.Popen[bytes]],
) -> None:
    conn, base, _proc = worker
    b = base / "b"
    (b / "followed.log").write_text("before the command\n")
    (b / "old.log").write_text("untouched\n")
    # the stock worker polls every 2 s: the command outlives one poll
    script = (
        "echo one > new.log; echo first >> followed.log; sleep 2.5; "
        "echo two >> new.log; echo second >> followed.log"
    )
    tailed = await conn.run_command(
        "shell",
        {
            "workdir": str(b),
            "command": script,
            "logfiles": {
                "new": "new.log",
                "old": "old.log",
                "followed": {"filename": "followed.log", "follow": True},
            },
            "logEnviron": False,
        },
    )
    assert tailed.rc == 0
    assert tailed.log("new") == "one\ntwo\n"
    assert tailed.log("old") == ""
    followed = tailed.log("followed")
    # both workers send what came after the start; only ours is sure to catch "first" too
    assert "before the command" not in followed
    assert followed.endswith("second\n")

    if conn.info["worker_commands"]["shell"] == "3.2":
        # buildbot-worker 3.x: its shell command (version 3.2) has no max_lines, which the
        # worker's own command version history gives to 3.3 (buildbot-worker 4.x); it ignores
        # the argument, as it does under Buildbot's master, which sends it all the same
        assert conn.info["version"].startswith("3.")
        unlimited = await conn.run_command(
            "shell",
            {"workdir": str(b), "command": "seq 1 30", "max_lines": 10, "logEnviron": False},
        )
        assert unlimited.rc == 0 and unlimited.last("failure_reason") is None
        assert unlimited.text("stdout").split() == [str(i) for i in range(1, 31)]
    else:
        await _max_lines_kill(conn, b)

    probe = "test -t 1 && echo tty || echo notty; echo err >&2"
    on_pty = await conn.run_command(
        "shell", {"workdir": str(b), "command": probe, "usePTY": True, "logEnviron": False}
    )
    assert on_pty.rc == 0
    assert on_pty.text("stdout") == "tty\nerr\n"
    assert " using PTY: True\n" in on_pty.text("header")


async def _max_lines_kill(conn: WorkerConnection, b: Path) -> None:
    limited = await asyncio.wait_for(
        conn.run_command(
            "shell",
            {"workdir": str(b), "command": "seq 1 100000; sleep 300", "max_lines": 10},
        ),
        60,
    )
    assert limited.last("failure_reason") == "max_lines_failure"
    assert limited.rc == -1
    assert "command exceeds max lines: " in limited.text("header")

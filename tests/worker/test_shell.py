"""The shell command against real processes (spec sections 8-10)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from buildyard.testing.processes import eventually
from buildyard.worker.commands.shell import build_env
from tests.worker.helpers import run, start

SPAWNS_CHILD = "sleep 100 & echo $! > child.pid; echo started; sleep 100"


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def child_pid(workdir: Path) -> int:
    pidfile = workdir / "child.pid"
    await eventually(lambda: pidfile.exists() and pidfile.read_text().strip() != "", within=10)
    return int(pidfile.read_text())


async def test_rc_and_streams_are_separate(tmp_path: Path) -> None:
    r = await run(
        "shell",
        {"workdir": "build", "command": "echo out; echo err >&2; exit 3"},
        tmp_path,
    )
    assert r.text("stdout") == "out\n"
    assert r.text("stderr") == "err\n"
    assert r.last("rc") == 3
    assert isinstance(r.last("elapsed"), float)
    assert (tmp_path / "build").is_dir()  # workdir created, relative to the basedir
    header = r.text("header")
    assert header.startswith("echo out; echo err >&2; exit 3\n in dir ")
    assert "elapsedTime=" in header
    assert r.keys()[-2:] == ["rc", "elapsed"]
    assert r.failure is None


async def test_argv_list_is_executed_directly_and_wants_are_honoured(tmp_path: Path) -> None:
    r = await run(
        "shell",
        {
            "workdir": str(tmp_path),
            "command": ["python3", "-c", "import sys; print('o'); print('e', file=sys.stderr)"],
            "want_stderr": 0,
        },
        tmp_path,
    )
    assert r.text("stdout") == "o\n"
    assert r.text("stderr") == ""
    assert r.last("rc") == 0


async def test_env_expansion_deletion_and_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BY_BASE", "base")
    monkeypatch.setenv("BY_GONE", "x")
    env = {"BY_NEW": "${BY_BASE}-more-${BY_UNSET}", "BY_GONE": None, "BY_LIST": ["a", "b"]}
    r = await run(
        "shell",
        {
            "workdir": str(tmp_path),
            "command": 'echo "$BY_NEW|${BY_GONE-unset}|$BY_LIST"',
            "env": env,
        },
        tmp_path,
    )
    assert r.text("stdout") == f"base-more-|unset|a{os.pathsep}b\n"
    assert build_env({"PYTHONPATH": "p"}, {"PYTHONPATH": "q"})["PYTHONPATH"] == f"p{os.pathsep}q"


async def test_initial_stdin_and_partial_last_line(tmp_path: Path) -> None:
    r = await run(
        "shell",
        {"workdir": str(tmp_path), "command": "cat; printf tail", "initial_stdin": "fed\n"},
        tmp_path,
    )
    assert r.text("stdout") == "fed\ntail\n"


async def test_timeout_without_output_kills_the_whole_group(tmp_path: Path) -> None:
    _cmd, r, task = start(
        "shell", {"workdir": str(tmp_path), "command": SPAWNS_CHILD, "timeout": 1}, tmp_path
    )
    child = await child_pid(tmp_path)
    began = time.monotonic()
    async with asyncio.timeout(30):
        await task
    assert time.monotonic() - began < 10
    assert r.last("failure_reason") == "timeout_without_output"
    assert r.last("rc") == -1
    assert "1.0 seconds without output" in r.text("header")
    assert "process killed by signal 9" in r.text("header")
    await eventually(lambda: gone(child), within=5)


async def test_max_time_kills_the_whole_group(tmp_path: Path) -> None:
    _cmd, r, task = start(
        "shell",
        {"workdir": str(tmp_path), "command": SPAWNS_CHILD, "maxTime": 1, "sigtermTime": 2},
        tmp_path,
    )
    child = await child_pid(tmp_path)
    async with asyncio.timeout(30):
        await task
    assert r.last("failure_reason") == "timeout"
    assert r.last("rc") == -1
    assert "process killed by signal 15" in r.text("header")  # SIGTERM was enough
    await eventually(lambda: gone(child), within=5)


async def test_interrupt_kills_group_rc_minus_one_and_no_elapsed(tmp_path: Path) -> None:
    cmd, r, task = start("shell", {"workdir": str(tmp_path), "command": SPAWNS_CHILD}, tmp_path)
    child = await child_pid(tmp_path)
    cmd.interrupt("stop it")
    async with asyncio.timeout(30):
        await task
    header = r.text("header")
    assert "stop it, attempting to kill" in header
    assert "process killed by signal 9" in header
    assert r.last("rc") == -1
    assert r.last("elapsed") is None
    assert r.failure is None
    await eventually(lambda: gone(child), within=5)


async def test_interrupt_signal_term(tmp_path: Path) -> None:
    cmd, r, task = start(
        "shell",
        {"workdir": str(tmp_path), "command": SPAWNS_CHILD, "interruptSignal": "TERM"},
        tmp_path,
    )
    child = await child_pid(tmp_path)
    cmd.interrupt("why")
    async with asyncio.timeout(30):
        await task
    assert "process killed by signal 15" in r.text("header")
    assert r.last("rc") == -1
    await eventually(lambda: gone(child), within=5)


async def test_logfiles_not_implemented_yet(tmp_path: Path) -> None:
    r = await run(
        "shell",
        {"workdir": str(tmp_path), "command": "true", "logfiles": {"l": "x.log"}},
        tmp_path,
    )
    assert "NotImplementedError: logfiles" in r.failure


async def test_interrupt_while_the_process_starts_still_kills_it(tmp_path: Path) -> None:
    cmd, r, task = start("shell", {"workdir": str(tmp_path), "command": "sleep 30"}, tmp_path)
    await asyncio.sleep(0)  # the command is now inside create_subprocess_exec
    cmd.interrupt("stop it early")
    async with asyncio.timeout(10):  # not the 30 s of the sleep
        await task
    assert r.last("rc") == -1
    assert "stop it early, attempting to kill" in r.text("header")


async def test_a_slow_master_slows_the_command_instead_of_growing_memory(tmp_path: Path) -> None:
    from buildyard.worker.commands import create, execute
    from buildyard.worker.commands.output import MAX_BACKLOG, CommandOutput, Outbox, Settings

    received = 0

    async def slow_master(op: str, **fields: object) -> None:
        nonlocal received
        await asyncio.sleep(0.002)  # each acknowledgement takes a while
        if op == "update":
            for key, value in fields["args"]:  # type: ignore[attr-defined]
                if key == "stdout":
                    received += len(value[0])

    settings = Settings(buffer_size=1024)  # many small updates
    command = create(
        command_id="1",
        name="shell",
        basedir=tmp_path,
        args={"workdir": str(tmp_path), "command": "yes | head -c 3000000", "logEnviron": False},
        output_factory=lambda: CommandOutput(Outbox(slow_master, command_id="1"), settings),
    )
    task = asyncio.create_task(execute(command))
    deepest = 0
    async with asyncio.timeout(120):
        while not task.done():
            deepest = max(deepest, command.output.outbox._queue.qsize())
            await asyncio.sleep(0.005)
    await task
    assert received == 3_000_000
    assert deepest <= MAX_BACKLOG + 4, deepest

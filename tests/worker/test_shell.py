"""The shell command against real processes (docs/worker-protocol.md)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import pytest

from buildyard.testing.processes import eventually
from buildyard.worker.commands.runprocess import PIPE_SIZE
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


async def test_logfiles_are_tailed_while_the_command_runs(tmp_path: Path) -> None:
    (tmp_path / "old.log").write_text("untouched\n")
    (tmp_path / "followed.log").write_text("before the command\n")
    # the second line is written after a poll, the last one without a newline
    script = (
        "echo one > new.log; sleep 1.5; echo two >> new.log; printf three >> new.log; "
        "echo appended >> followed.log"
    )
    r = await run(
        "shell",
        {
            "workdir": str(tmp_path),
            "command": script,
            "logfiles": {
                "new": "new.log",
                "old": "old.log",
                "followed": {"filename": "followed.log", "follow": True},
            },
        },
        tmp_path,
    )
    assert r.failure is None
    assert r.last("rc") == 0
    assert r.log("new") == "one\ntwo\nthree\n"
    assert r.log("followed") == "appended\n"  # only what came after the start
    assert r.log("old") == ""  # never written: nothing sent
    logs = [v[0] for k, v in r.updates if k == "log"]
    assert "old" not in logs
    # "one" went out while the command still ran, before rc
    first_new = next(i for i, (k, v) in enumerate(r.updates) if k == "log" and v[0] == "new")
    assert r.updates[first_new][1][1][0].startswith("one\n")
    assert first_new < r.keys().index("rc")
    assert " watching logfiles {'new': 'new.log'," in r.text("header")


async def test_a_logfile_deleted_and_rewritten_is_read_whole(tmp_path: Path) -> None:
    (tmp_path / "x.log").write_text("stale\n")
    r = await run(
        "shell",
        {
            "workdir": str(tmp_path),
            "command": "rm x.log; sleep 1.5; echo fresh > x.log",
            "logfiles": {"x": "x.log"},
        },
        tmp_path,
    )
    assert r.log("x") == "fresh\n"


async def test_logfile_output_resets_the_no_output_timeout(tmp_path: Path) -> None:
    # silent on stdout for 4 s, but the logfile grows every half second: no timeout at 2.5 s
    script = "for i in 1 2 3 4 5 6 7 8; do echo $i >> t.log; sleep 0.5; done"
    r = await run(
        "shell",
        {"workdir": str(tmp_path), "command": script, "logfiles": {"t": "t.log"}, "timeout": 2.5},
        tmp_path,
    )
    assert r.last("failure_reason") is None
    assert r.last("rc") == 0
    assert r.log("t").split() == [str(i) for i in range(1, 9)]


async def test_bad_logfiles_fail_the_command_with_the_reason(tmp_path: Path) -> None:
    r = await run(
        "shell",
        {"workdir": str(tmp_path), "command": "true", "logfiles": {"l": {"follow": True}}},
        tmp_path,
    )
    assert "logfiles['l'] has no 'filename'" in r.failure


async def test_max_lines_kills_the_command(tmp_path: Path) -> None:
    started = time.monotonic()
    r = await run(
        "shell",
        {
            "workdir": str(tmp_path),
            "command": "seq 1 100000; echo after > after.txt; sleep 30",
            "max_lines": 10,
        },
        tmp_path,
    )
    assert time.monotonic() - started < 20
    assert r.last("failure_reason") == "max_lines_failure"
    assert r.last("rc") == -1
    assert "command exceeds max lines: " in r.text("header")
    assert "/10 written/allowed running seq 1 100000" in r.text("header")
    # output stops at the line that went over the limit, whatever the size of the reads
    assert r.text("stdout") == "".join(f"{i}\n" for i in range(1, 12))
    # and the failure is told after the output it is about
    keys = [k for k, _ in r.updates]
    assert keys.index("failure_reason") > max(i for i, k in enumerate(keys) if k == "stdout")


async def test_max_lines_not_reached(tmp_path: Path) -> None:
    r = await run(
        "shell", {"workdir": str(tmp_path), "command": "seq 1 10", "max_lines": 10}, tmp_path
    )
    assert r.last("failure_reason") is None
    assert r.last("rc") == 0
    assert r.text("stdout").split() == [str(i) for i in range(1, 11)]


async def test_use_pty_gives_the_command_a_terminal(tmp_path: Path) -> None:
    probe = "test -t 0 && test -t 1 && echo tty || echo notty; echo err >&2; exit 4"
    r = await run("shell", {"workdir": str(tmp_path), "command": probe, "usePTY": True}, tmp_path)
    assert r.failure is None
    assert r.last("rc") == 4
    # one terminal for both streams; its \r\n become \n
    assert r.text("stdout") == "tty\nerr\n"
    assert r.text("stderr") == ""
    assert " using PTY: True\n" in r.text("header")
    plain = await run("shell", {"workdir": str(tmp_path), "command": probe}, tmp_path)
    assert plain.text("stdout") == "notty\n"
    assert plain.text("stderr") == "err\n"
    assert " using PTY: False\n" in plain.text("header")


async def test_use_pty_is_dropped_for_initial_stdin(tmp_path: Path) -> None:
    r = await run(
        "shell",
        {"workdir": str(tmp_path), "command": "cat", "usePTY": True, "initial_stdin": "in\n"},
        tmp_path,
    )
    assert r.text("stdout") == "in\n"
    assert "WARNING: disabling usePTY for this command\n" in r.text("header")
    assert " using PTY: False\n" in r.text("header")


async def test_use_pty_interrupt_kills_the_process_tree(tmp_path: Path) -> None:
    cmd, r, task = start(
        "shell", {"workdir": str(tmp_path), "command": SPAWNS_CHILD, "usePTY": True}, tmp_path
    )
    child = await child_pid(tmp_path)
    cmd.interrupt("why")
    async with asyncio.timeout(30):
        await task
    assert r.last("rc") == -1
    await eventually(lambda: gone(child), within=5)


async def test_use_pty_must_be_a_bool(tmp_path: Path) -> None:
    r = await run("shell", {"workdir": str(tmp_path), "command": "true", "usePTY": "yes"}, tmp_path)
    assert "usePTY must be True or False, not 'yes'" in r.failure


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


async def test_loud_output_on_both_streams_arrives_whole_and_in_order(tmp_path: Path) -> None:
    script = (
        "import fcntl, sys\n"
        "print('pipe', fcntl.fcntl(1, fcntl.F_GETPIPE_SZ), file=sys.stderr, flush=True)\n"
        "for i in range(60000):\n"
        "    print(f'line {i:06d} ' + 'x' * 80)\n"
        "    if i % 20000 == 0:\n"
        "        sys.stdout.flush(); print(f'err {i}', file=sys.stderr, flush=True)\n"
    )
    r = await run(
        "shell",
        {"workdir": str(tmp_path), "command": ["python3", "-c", script], "logEnviron": False},
        tmp_path,
    )
    assert r.last("rc") == 0
    assert r.text("stdout") == "".join(f"line {i:06d} {'x' * 80}\n" for i in range(60000))
    size, *errors = r.text("stderr").splitlines()
    assert errors == ["err 0", "err 20000", "err 40000"]
    # a loud child writes into a 1 MiB pipe (Linux's default is 64 KiB)
    assert size == f"pipe {PIPE_SIZE}"


async def test_a_command_that_cannot_start_leaves_no_descriptor_open(tmp_path: Path) -> None:
    def pipes() -> set[str]:
        """The pipes this process has open (other descriptors come and go with the tests
        that ran before in the same process)."""
        found = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target.startswith("pipe:"):
                    found.add(target)
        return found

    before = pipes()
    for _ in range(3):
        r = await run("shell", {"workdir": str(tmp_path), "command": ["echo", "a\0b"]}, tmp_path)
        assert r.failure is not None  # a NUL cannot be in an argument
    assert pipes() - before == set()

"""``worker.LocalWorker`` with a real master process: the master runs the worker itself (no
``c['protocols']``), builds on it, and leaves no worker process behind when it stops, when a
reconfig removes the worker, or when it is SIGKILLed; a worker process that dies is started
again by the next reconfig."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, ended_at_exit, wait_for

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.LocalWorker('local'){extra}]
c['builders'] = [util.BuilderConfig(name='hello', workernames=['local'],
    factory=util.BuildFactory([steps.ShellCommand(command='echo hello from $(pwd)')]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['hello'])]
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def _write_config(basedir: Path, www: int, extra: str = "") -> None:
    (basedir / "master.cfg").write_text(CONFIG.format(www=www, extra=extra))


def _api(www: int, path: str, body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{www}/api/v2/{path}",
        data=data,
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _pid(pidfile: Path) -> list[int]:
    try:
        return [int(pidfile.read_text())]
    except (OSError, ValueError):
        return []


def _worker_alive(pid: int) -> bool:
    """Whether ``pid`` is still a running buildyard-worker (a zombie nobody reaped is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X") and b"buildyard.worker.cli" in cmdline


def _connected(www: int, name: str) -> bool:
    with contextlib.suppress(OSError):
        workers = _api(www, f"workers?name={name}")["workers"]
        return bool(workers) and bool(workers[0]["connected_to"])
    return False


def _worker_pid(basedir: Path, name: str) -> int:
    pidfile = basedir / "workers" / name / "buildyard-worker.pid"
    assert wait_for(lambda: bool(_pid(pidfile)), timeout=60), "no worker pid file"
    (pid,) = _pid(pidfile)
    return pid


def _start(basedir: Path, www: int) -> None:
    started = buildyard("start", str(basedir))
    assert started.returncode == 0, started.stderr + started.stdout


def test_a_local_worker_builds_and_leaves_with_its_master(tmp_path: Path) -> None:
    basedir = tmp_path / "master"
    assert buildyard("create-master", str(basedir)).returncode == 0
    www = free_port()
    _write_config(basedir, www)
    worker_pids: list[int] = []
    with ended_at_exit(lambda: [*_pid(basedir / "buildyard.pid"), *worker_pids]):
        _start(basedir, www)
        assert wait_for(lambda: _connected(www, "local"), timeout=120), (
            basedir / "buildyard.log"
        ).read_text()[-3000:]
        worker_pids.append(_worker_pid(basedir, "local"))

        (builder,) = _api(www, "builders?name=hello")["builders"]
        rpc = {"jsonrpc": "2.0", "method": "force", "id": 1}
        reply = _api(
            www, "forceschedulers/force", {**rpc, "params": {"builderid": builder["builderid"]}}
        )
        assert "result" in reply, reply

        def finished() -> bool:
            builds = _api(www, f"builders/{builder['builderid']}/builds")["builds"]
            return bool(builds) and all(b["complete"] for b in builds)

        assert wait_for(finished, timeout=300, interval=0.2)
        (build,) = _api(www, f"builders/{builder['builderid']}/builds")["builds"]
        assert build["results"] == 0  # SUCCESS
        (step,) = _api(www, f"builds/{build['buildid']}/steps")["steps"]
        (stdio,) = _api(www, f"steps/{step['stepid']}/logs")["logs"]
        (chunk,) = _api(www, f"logs/{stdio['logid']}/contents")["logchunks"]
        # the worker's directory is Buildbot's: <master basedir>/workers/<name>
        workdir = basedir.resolve() / "workers" / "local" / "hello" / "build"
        assert f"\nohello from {workdir}\n" in "\n" + chunk["content"], chunk["content"]

        # a reconfig adds a second local worker, then removes it: its process goes with it
        _write_config(basedir, www, extra=", worker.LocalWorker('second', max_builds=1)")
        assert buildyard("reconfig", str(basedir)).returncode == 0
        assert wait_for(lambda: _connected(www, "second"), timeout=120)
        second = _worker_pid(basedir, "second")
        worker_pids.append(second)
        _write_config(basedir, www)
        assert buildyard("reconfig", str(basedir)).returncode == 0
        assert wait_for(lambda: not _worker_alive(second), timeout=60)
        assert _worker_alive(worker_pids[0])  # the unchanged one kept running
        assert _connected(www, "local")

        stopped = buildyard("stop", str(basedir))
        assert stopped.returncode == 0, stopped.stderr
        # the master stops its worker before it exits
        assert not _worker_alive(worker_pids[0])


def test_a_local_worker_leaves_when_its_master_is_killed(tmp_path: Path) -> None:
    basedir = tmp_path / "master"
    assert buildyard("create-master", str(basedir)).returncode == 0
    www = free_port()
    _write_config(basedir, www)
    worker_pids: list[int] = []
    with ended_at_exit(lambda: [*_pid(basedir / "buildyard.pid"), *worker_pids]):
        _start(basedir, www)
        assert wait_for(lambda: _connected(www, "local"), timeout=120)
        first = _worker_pid(basedir, "local")
        worker_pids.append(first)

        # a worker process that dies is logged, and the next reconfig starts it again
        os.kill(first, signal.SIGKILL)
        log = basedir / "buildyard.log"
        assert wait_for(lambda: "local_worker_exited" in log.read_text(), timeout=60)
        assert not _worker_alive(first)
        assert buildyard("reconfig", str(basedir)).returncode == 0
        pidfile = basedir / "workers" / "local" / "buildyard-worker.pid"
        assert wait_for(lambda: _pid(pidfile) not in ([], [first]), timeout=60)
        (worker,) = _pid(pidfile)
        assert _worker_alive(worker)
        worker_pids.append(worker)
        assert wait_for(lambda: _connected(www, "local"), timeout=120)

        (master,) = _pid(basedir / "buildyard.pid")
        os.kill(master, signal.SIGKILL)
        assert wait_for(lambda: not _worker_alive(worker), timeout=60), (
            basedir / "workers" / "local" / "buildyard-worker.log"
        ).read_text()[-3000:]

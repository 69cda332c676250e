"""buildyard-worker against the real buildyard master (real processes, loopback)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, end_popen, spawn_master, wait_for

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': 'tcp:{port}:interface=127.0.0.1'}}}}
c['builders'] = [
    util.BuilderConfig(name="first build", workernames=["w1"], factory=util.BuildFactory()),
]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def worker_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "buildyard.worker.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def spawn_worker(basedir: Path) -> subprocess.Popen[bytes]:
    with (basedir / "out.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "buildyard.worker.cli", "start", "--nodaemon", str(basedir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def connected(master: Path) -> list[tuple[str, dict[str, object]]]:
    try:
        with sqlite3.connect(master / "state.sqlite") as db:
            rows = db.execute(
                "SELECT w.name, w.info FROM workers w JOIN connected_workers c ON c.workerid = w.id"
            ).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    return [(name, json.loads(info)) for name, info in rows]


def listening(master: Path, count: int) -> bool:
    return (master / "out.log").read_text().count("worker_listener_listening") >= count


def test_worker_connects_is_set_up_and_reconnects_after_master_restart(tmp_path: Path) -> None:
    master = tmp_path / "master"
    assert buildyard("create-master", "-q", str(master)).returncode == 0
    port = free_port()
    (master / "master.cfg").write_text(CONFIG.format(port=port))
    wdir = tmp_path / "w1"
    made = worker_cli("create-worker", "-q", str(wdir), f"127.0.0.1:{port}", "w1", "pw")
    assert made.returncode == 0, made.stderr
    assert (wdir / "info" / "admin").exists()
    procs: list[subprocess.Popen[bytes]] = [spawn_master(master)]
    try:
        assert wait_for(lambda: listening(master, 1), timeout=60), (master / "out.log").read_text()[
            -3000:
        ]
        procs.append(spawn_worker(wdir))

        def logs() -> str:
            return (master / "out.log").read_text()[-3000:] + (wdir / "out.log").read_text()[-3000:]

        assert wait_for(lambda: bool(connected(master)), timeout=60), logs()
        ((name, info),) = connected(master)
        assert name == "w1"
        assert info["admin"] == (wdir / "info" / "admin").read_text()
        # the connect sequence ran listdir, then mkdir of the builder directory
        assert wait_for((wdir / "first_build").is_dir, timeout=30), logs()
        assert wait_for(lambda: "worker_attached" in (master / "out.log").read_text(), timeout=10)

        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(timeout=10)
        procs[0] = spawn_master(master)
        assert wait_for(lambda: listening(master, 2), timeout=60), logs()
        # the killed master left its row behind; the restarted one records the new connection
        assert wait_for(
            lambda: (master / "out.log").read_text().count("worker_attached") >= 2, timeout=90
        ), logs()
        assert wait_for(lambda: bool(connected(master)), timeout=30), logs()
        assert procs[1].poll() is None
    finally:
        for proc in reversed(procs):
            end_popen(proc)


def test_start_with_a_wrong_password_says_the_master_refused_it(tmp_path: Path) -> None:
    master = tmp_path / "master"
    assert buildyard("create-master", "-q", str(master)).returncode == 0
    port = free_port()
    (master / "master.cfg").write_text(CONFIG.format(port=port))
    wrong, right = tmp_path / "wrong", tmp_path / "right"
    for wdir, password in ((wrong, "not-pw"), (right, "pw")):
        made = worker_cli("create-worker", "-q", str(wdir), f"127.0.0.1:{port}", "w1", password)
        assert made.returncode == 0, made.stderr
    proc = spawn_master(master)
    try:
        assert wait_for(lambda: listening(master, 1), timeout=60), (master / "out.log").read_text()
        refused = worker_cli("start", str(wrong))
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "started" not in refused.stdout
        assert "refused worker 'w1': wrong name or password" in refused.stderr
        assert not (wrong / "buildyard-worker.pid").exists()  # the worker stopped

        # in the foreground too: the refusal ends the worker, non-zero
        foreground = subprocess.run(
            [sys.executable, "-m", "buildyard.worker.cli", "start", "--nodaemon", str(wrong)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert foreground.returncode == 1
        assert "the master refused worker w1" in foreground.stdout + foreground.stderr

        started = worker_cli("start", str(right))
        try:
            assert started.returncode == 0, started.stdout + started.stderr
            assert "connected to the master" in started.stdout
        finally:
            assert worker_cli("stop", str(right)).returncode == 0
    finally:
        end_popen(proc)

"""The stock buildbot-worker 4.3.0 connects to a buildyard master (real processes, loopback)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, end_popen, spawn_master, wait_for
from buildyard.testing.stock import buildbot_venv

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "secret")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': 'tcp:{port}:interface=127.0.0.1'}}}}
c['builders'] = [
    util.BuilderConfig(name="first build", workernames=["w1"], factory=util.BuildFactory()),
]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def stock_worker(basedir: Path, port: int, name: str, password: str) -> subprocess.Popen[bytes]:
    bin_dir = buildbot_venv() / "bin"
    subprocess.run(
        [
            str(bin_dir / "buildbot-worker"),
            "create-worker",
            "--protocol=msgpack_experimental_v7",
            "--maxretries=1000",
            str(basedir),
            f"127.0.0.1:{port}",
            name,
            password,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with (basedir / "out.log").open("ab") as out:
        return subprocess.Popen(
            [str(bin_dir / "buildbot-worker"), "start", "--nodaemon", str(basedir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def connected(master: Path) -> list[tuple[str, dict[str, object]]]:
    with sqlite3.connect(master / "state.sqlite") as db:
        rows = db.execute(
            "SELECT w.name, w.info FROM workers w JOIN connected_workers c ON c.workerid = w.id"
        ).fetchall()
    return [(name, json.loads(info)) for name, info in rows]


def test_stock_worker_connects_is_set_up_and_is_noticed_when_killed(tmp_path: Path) -> None:
    master = tmp_path / "master"
    assert buildyard("create-master", "-q", str(master)).returncode == 0
    port = free_port()
    (master / "master.cfg").write_text(CONFIG.format(port=port))
    proc = spawn_master(master)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        assert wait_for(
            lambda: "worker_listener_listening" in (master / "out.log").read_text(), timeout=60
        ), (master / "out.log").read_text()[-3000:]
        intruder = tmp_path / "intruder"
        workers.append(stock_worker(intruder, port, "w1", "wrong"))
        good = tmp_path / "w1"
        workers.append(stock_worker(good, port, "w1", "secret"))

        assert wait_for(lambda: bool(connected(master)), timeout=60), (
            master / "out.log"
        ).read_text()[-3000:] + (good / "out.log").read_text()[-3000:]
        ((name, info),) = connected(master)
        assert name == "w1"
        assert info["version"] == "4.3.0"
        assert (good / "info" / "admin").read_text().strip() in str(info["admin"])
        # the connect sequence ran commands on the worker: listdir, then mkdir of the builder dir
        assert wait_for((good / "first_build").is_dir, timeout=30)
        # the intruder may reach the master before or after the good worker: wait for its refusal
        assert wait_for(
            lambda: any(
                r in (master / "out.log").read_text()
                for r in ("reason='wrong password'", "reason=wrong password")
            ),
            timeout=60,
        ), (master / "out.log").read_text()[-3000:] + (intruder / "out.log").read_text()[-3000:]
        log = (master / "out.log").read_text()
        assert "worker_attached" in log
        assert "worker=w1" in log
        assert proc.poll() is None  # the refused intruder disturbed nothing

        os.kill(workers[1].pid, signal.SIGKILL)
        workers[1].wait(timeout=10)
        assert wait_for(lambda: not connected(master), timeout=30)
        assert wait_for(
            lambda: "worker_disconnected" in (master / "out.log").read_text(), timeout=10
        )
    finally:
        for w in workers:
            end_popen(w)
        end_popen(proc)

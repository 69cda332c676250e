"""A master.cfg's own ``AbstractLatentWorker`` subclass (imported from ``buildbot.worker``, as
Buildbot configs do), whose "instance" is a buildyard-worker process it starts itself:
``start_instance`` as a plain function rendering a property of the request, ``stop_instance`` as
a coroutine. A build starts it; when its worker dies on its own the master stops the instance
(rather than leaving it running) and the next build starts a new one; the master's stop stops
the last."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from buildyard.testing.latent import alive, api
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, ended_at_exit, wait_for

pytestmark = pytest.mark.e2e

CONFIG = """\
import pathlib, subprocess, sys
from buildyard.plugins import *
from buildbot.worker import AbstractLatentWorker

EVENTS = pathlib.Path('events.log')

class ProcessWorker(AbstractLatentWorker):
    proc = None

    def start_instance(self, build):
        where = pathlib.Path('instances') / self.name
        where.mkdir(parents=True, exist_ok=True)
        master = f'{{self.master_info.host}}:{{self.master_info.msgpack_port}}'
        subprocess.run([sys.executable, '-m', 'buildyard.worker.cli', 'create-worker', '--quiet',
                        str(where), master, self.name, self.password], check=True)
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'buildyard.worker.cli', 'start', '--nodaemon', str(where)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        with EVENTS.open('a') as f:
            f.write(f"start {{build.getProperty('buildername')}} {{self.proc.pid}}\\n")
        return True

    async def stop_instance(self, fast=False):
        import asyncio
        if self.proc is not None:
            self.proc.terminate()
            await asyncio.to_thread(self.proc.wait)
            with EVENTS.open('a') as f:
                f.write(f'stop {{self.proc.pid}}\\n')
            self.proc = None

c = BuildmasterConfig = {{}}
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['workers'] = [ProcessWorker('proc', build_wait_timeout=-1)]
c['builders'] = [util.BuilderConfig(name='hello', workernames=['proc'],
    factory=util.BuildFactory([steps.ShellCommand(command='echo hello')]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['hello'])]
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def test_a_latent_worker_subclass_from_master_cfg(tmp_path: Path) -> None:
    basedir = tmp_path / "master"
    assert buildyard("create-master", str(basedir)).returncode == 0
    www = free_port()
    (basedir / "master.cfg").write_text(CONFIG.format(port=free_port(), www=www))
    events = basedir / "events.log"

    def lines() -> list[list[str]]:
        return [line.split() for line in events.read_text().splitlines()] if events.exists() else []

    def pids() -> list[int]:
        found = [int(parts[-1]) for parts in lines()]
        with contextlib.suppress(OSError, ValueError):
            found.append(int((basedir / "buildyard.pid").read_text()))
        return [p for p in found if alive(p)]

    with ended_at_exit(pids):
        started = buildyard("start", str(basedir))
        assert started.returncode == 0, started.stderr + started.stdout
        (builder,) = api(www, "builders?name=hello")["builders"]
        builderid = builder["builderid"]

        def force_and_finish(count: int) -> dict[str, Any]:
            rpc = {"jsonrpc": "2.0", "method": "force", "id": 1, "params": {"builderid": builderid}}
            assert "result" in api(www, "forceschedulers/force", rpc)

            def done() -> bool:
                builds = api(www, f"builders/{builderid}/builds")["builds"]
                return len(builds) == count and all(b["complete"] for b in builds)

            log = basedir / "buildyard.log"
            assert wait_for(done, timeout=180, interval=0.2), log.read_text()[-3000:]
            return dict(api(www, f"builders/{builderid}/builds")["builds"][-1])

        assert force_and_finish(1)["results"] == 0
        [(start, builder_name, first_pid)] = lines()
        assert (start, builder_name) == ("start", "hello")  # rendered from the request
        assert alive(int(first_pid))

        # its worker dies on its own: the master stops the instance
        os.kill(int(first_pid), signal.SIGKILL)
        assert wait_for(lambda: ["stop", first_pid] in lines(), timeout=60)

        # and the next build starts a new one
        assert force_and_finish(2)["results"] == 0
        assert [p[0] for p in lines()] == ["start", "stop", "start"]
        second = lines()[-1][-1]
        assert second != first_pid and alive(int(second))

        stopped = buildyard("stop", str(basedir))
        assert stopped.returncode == 0, stopped.stderr
        assert lines()[-1] == ["stop", second]
        assert not alive(int(second))

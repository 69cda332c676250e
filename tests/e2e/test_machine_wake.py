"""A worker on a machine the master wakes (c['machines']): the worker (a LocalLatentWorker) runs
on "host1", a stand-in host that boots its worker when Debian's ``wakeonlan`` sends it the magic
packet (to a loopback UDP socket the stand-in reads) and shuts it down when the machine's stop
action runs. A build wakes the machine before it starts; the machine sleeps again
``build_wait_timeout`` after the build; the next build wakes it again."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, end_popen, ended_at_exit, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("wakeonlan") is None, reason="Debian's wakeonlan"),
]

MAC = "52:54:00:12:34:56"

# the stand-in host: waits for its magic packet, then "boots" (starts its worker)
HOST = """\
import os, socket, subprocess, sys, time
port, mac, workdir, events = int(sys.argv[1]), bytes.fromhex(sys.argv[2].replace(':', '')), \\
    sys.argv[3], sys.argv[4]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(('127.0.0.1', port))
open(events + '.ready', 'w').close()
worker = None
while True:
    packet = sock.recv(1024)
    if packet != b'\\xff' * 6 + mac * 16:
        continue
    if worker is not None and worker.poll() is None:
        continue  # already up
    worker = subprocess.Popen(
        [sys.executable, '-m', 'buildyard.worker.cli', 'start', '--nodaemon', workdir],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    with open(workdir + '.pid', 'w') as f:
        f.write(str(worker.pid))
    with open(events, 'a') as f:
        f.write(f'woken {time.time()} {worker.pid}\\n')
"""

CONFIG = """\
import sys
from buildbot.plugins import util, steps, schedulers
from buildbot.worker.latent import LocalLatentWorker
from buildbot.machine.generic import GenericLatentMachine, LocalWOLAction, LocalWakeAction

SLEEP = ("import os, signal, time; pid = int(open({pidfile!r}).read()); "
         "os.kill(pid, signal.SIGTERM); "
         "open({events!r}, 'a').write(f'asleep {{time.time()}} {{pid}}\\\\n')")

c = BuildmasterConfig = {{}}
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['machines'] = [GenericLatentMachine(
    'host1',
    start_action=LocalWOLAction({mac!r}, wolBin={wol!r}),
    stop_action=LocalWakeAction([sys.executable, '-c', SLEEP]),
    build_wait_timeout=1)]
c['workers'] = [LocalLatentWorker('w1', 'pw', machine_name='host1')]
c['builders'] = [util.BuilderConfig(name='hello', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(command='echo hello')]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['hello'])]
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def _api(www: int, path: str, body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{www}/api/v2/{path}",
        data=data,
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_build_wakes_the_workers_machine_and_it_sleeps_after(tmp_path: Path) -> None:
    basedir = tmp_path / "master"
    assert buildyard("create-master", str(basedir)).returncode == 0
    port, www, wol_port = free_port(), free_port(), free_port()
    workdir = tmp_path / "host1-worker"
    create = [sys.executable, "-m", "buildyard.worker.cli", "create-worker", "--quiet"]
    created = subprocess.run(
        [*create, str(workdir), f"127.0.0.1:{port}", "w1", "pw"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stderr
    events = tmp_path / "events.log"
    pidfile = Path(f"{workdir}.pid")
    wol = tmp_path / "wol"
    wol.write_text(f'#!/bin/sh\nexec wakeonlan -i 127.0.0.1 -p {wol_port} "$@"\n')
    wol.chmod(0o755)
    (basedir / "master.cfg").write_text(
        CONFIG.format(
            port=port,
            www=www,
            mac=MAC,
            wol=str(wol),
            pidfile=str(pidfile),
            events=str(events),
        )
    )
    (tmp_path / "host.py").write_text(HOST)
    host = subprocess.Popen(
        [sys.executable, str(tmp_path / "host.py"), str(wol_port), MAC, str(workdir), str(events)],
        stdin=subprocess.DEVNULL,
    )

    def lines() -> list[list[str]]:
        return [line.split() for line in events.read_text().splitlines()] if events.exists() else []

    def pids() -> list[int]:
        found = [int(parts[-1]) for parts in lines()]
        with contextlib.suppress(OSError, ValueError):
            found.append(int((basedir / "buildyard.pid").read_text()))
        return [p for p in found if _alive(p)]

    try:
        with ended_at_exit(pids):
            assert wait_for(lambda: Path(f"{events}.ready").exists(), timeout=30)
            started = buildyard("start", str(basedir))
            assert started.returncode == 0, started.stderr + started.stdout
            (builder,) = _api(www, "builders?name=hello")["builders"]
            builderid = builder["builderid"]
            # asleep: nothing woke the machine yet, so its worker is not connected
            assert lines() == []
            (worker,) = _api(www, "workers?name=w1")["workers"]
            assert worker["connected_to"] == []

            def force_and_finish(count: int) -> dict[str, Any]:
                rpc = {"jsonrpc": "2.0", "method": "force", "id": 1}
                rpc["params"] = {"builderid": builderid}
                assert "result" in _api(www, "forceschedulers/force", rpc)

                def done() -> bool:
                    builds = _api(www, f"builders/{builderid}/builds")["builds"]
                    return len(builds) == count and all(b["complete"] for b in builds)

                log = basedir / "buildyard.log"
                assert wait_for(done, timeout=180, interval=0.2), log.read_text()[-3000:]
                return dict(_api(www, f"builders/{builderid}/builds")["builds"][-1])

            forced_at = time.time()
            build = force_and_finish(1)
            assert build["results"] == 0
            [(woken, woken_at, first)] = lines()
            assert woken == "woken"
            # woken by this request, before its build started
            assert forced_at <= float(woken_at) <= build["started_at"] + 1
            props = _api(www, f"builds/{build['buildid']}/properties")["properties"][0]
            assert props["machine_name"] == ["host1", "Worker"]

            # build_wait_timeout (1 s) after the build, the machine sleeps
            assert wait_for(lambda: len(lines()) == 2, timeout=60)
            asleep, asleep_at, slept_pid = lines()[1]
            assert (asleep, slept_pid) == ("asleep", first)
            assert float(asleep_at) >= build["complete_at"] + 1 - 0.2
            assert wait_for(lambda: not _alive(int(first)), timeout=30)

            # the next build wakes it again
            assert force_and_finish(2)["results"] == 0
            assert [p[0] for p in lines()[:3]] == ["woken", "asleep", "woken"]
            assert wait_for(lambda: [p[0] for p in lines()][-1] == "asleep", timeout=60)

            stopped = buildyard("stop", str(basedir))
            assert stopped.returncode == 0, stopped.stderr
            log = (basedir / "buildyard.log").read_text()
            assert "machine_starting" in log and "machine_stopped" in log
    finally:
        end_popen(host)

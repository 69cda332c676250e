"""c['machines'] end to end, side by side with stock Buildbot 4.3.0: one master.cfg (a
GenericLatentMachine woken by LocalWOLAction and put to sleep by LocalWakeAction, its worker an
AbstractLatentWorker that starts with its machine). Each master has its own stand-in host: a
process that boots the host's worker (the stock buildbot-worker, over PB) when Debian's
``wakeonlan`` sends it the magic packet on a loopback UDP socket; the stop action shuts that
worker down. On both: the machine sleeps until a build is requested, is woken (with the same
``wakeonlan`` arguments) before the build's step runs, sleeps again ``build_wait_timeout`` after
the build, and the next build wakes it again; builds carry the property ``machine_name``.

Why not Buildbot's own ``LocalLatentWorker``: in Buildbot 4.3.0 it cannot be built
(``checkConfig`` passes ``build_wait_timeout`` twice: "got multiple values for argument
'build_wait_timeout'"), so the config defines the same worker itself. buildyard's
``LocalLatentWorker`` is tested in tests/master/workers/test_machines.py."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from buildyard.testing.latent import alive, api
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, ended_at_exit, wait_for
from buildyard.testing.stock import buildbot_venv

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("wakeonlan") is None, reason="Debian's wakeonlan"),
]

MAC = "52:54:00:12:34:56"

# the stand-in host: waits for its magic packet, then "boots" (starts its worker)
HOST = """\
import socket, subprocess, sys, time
port, mac, workdir, events, worker_bin = int(sys.argv[1]), \\
    bytes.fromhex(sys.argv[2].replace(':', '')), sys.argv[3], sys.argv[4], sys.argv[5]
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
    worker = subprocess.Popen([worker_bin, 'start', '--nodaemon', workdir],
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
from buildbot.worker import AbstractLatentWorker
from buildbot.machine.generic import GenericLatentMachine, LocalWOLAction, LocalWakeAction

class OnMachineWorker(AbstractLatentWorker):
    starts_without_substantiate = True
    def start_instance(self, build):
        return True
    def stop_instance(self, fast=False):
        return None

SLEEP = ("import os, signal, time; pid = int(open({pidfile!r}).read()); "
         "os.kill(pid, signal.SIGTERM); "
         "open({events!r}, 'a').write(f'asleep {{time.time()}} {{pid}}\\\\n')")

c = BuildmasterConfig = {{}}
c['protocols'] = {{'pb': {{'port': 'tcp:{port}:interface=127.0.0.1'}}}}
c['machines'] = [GenericLatentMachine(
    'host1',
    start_action=LocalWOLAction({mac!r}, wolBin={wol!r}),
    stop_action=LocalWakeAction([sys.executable, '-c', SLEEP]),
    build_wait_timeout=1)]
c['workers'] = [OnMachineWorker('w1', 'pw', machine_name='host1', build_wait_timeout=-1)]
c['builders'] = [util.BuilderConfig(name='hello', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(command='echo hello')]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['hello'])]
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotNetUsageData'] = None
"""


def _dead(pid: int) -> bool:
    return not alive(pid)


def _side(kind: str, root: Path) -> dict[str, Any]:
    """One master of ``kind`` with its host: two builds; what happened."""
    root.mkdir()
    basedir = root / "master"
    if kind == "buildbot":
        exe = [str(buildbot_venv() / "bin" / "buildbot")]
    else:
        exe = [sys.executable, "-m", "buildyard.cli.main"]
    subprocess.run([*exe, "create-master", "-q", str(basedir)], check=True, timeout=300)
    port, www, wol_port = free_port(), free_port(), free_port()
    stock_worker = str(buildbot_venv() / "bin" / "buildbot-worker")
    workdir = root / "host1-worker"
    subprocess.run(
        [stock_worker, "create-worker", "-q", str(workdir), f"127.0.0.1:{port}", "w1", "pw"],
        check=True,
        timeout=120,
    )
    events, pidfile, wol_args = root / "events.log", Path(f"{workdir}.pid"), root / "wol.args"
    # wakeonlan sends to the broadcast address by default: the wrapper given as wolBin points it
    # at the stand-in's loopback socket (as a site gives its own network's address)
    wol = root / "wol"
    wol.write_text(
        f'#!/bin/sh\necho "$@" >> {wol_args}\nexec wakeonlan -i 127.0.0.1 -p {wol_port} "$@"\n'
    )
    wol.chmod(0o755)
    (basedir / "master.cfg").write_text(
        CONFIG.format(
            port=port, www=www, mac=MAC, wol=str(wol), pidfile=str(pidfile), events=str(events)
        )
    )
    (root / "host.py").write_text(HOST)
    host_argv = [sys.executable, str(root / "host.py"), str(wol_port), MAC, str(workdir)]
    host = subprocess.Popen([*host_argv, str(events), stock_worker], stdin=subprocess.DEVNULL)

    def lines() -> list[list[str]]:
        return [line.split() for line in events.read_text().splitlines()] if events.exists() else []

    def log() -> str:
        paths = [basedir / n for n in ("out.log", "twistd.log", "buildyard.log")]
        return "".join(p.read_text(errors="replace") for p in paths if p.exists())[-4000:]

    def pids() -> list[int]:
        return [int(p[-1]) for p in lines() if alive(int(p[-1]))]

    master: subprocess.Popen[bytes] | None = None
    try:
        with ended_at_exit(pids):
            assert wait_for(lambda: Path(f"{events}.ready").exists(), timeout=30)
            with (basedir / "out.log").open("ab") as out:
                master = subprocess.Popen(
                    [*exe, "start", "--nodaemon", str(basedir)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            running = master

            def force() -> bool:
                assert running.poll() is None, log()
                with contextlib.suppress(OSError, ValueError, KeyError):
                    (builder,) = api(www, "builders?name=hello")["builders"]
                    rpc = {"jsonrpc": "2.0", "method": "force", "id": 1}
                    rpc["params"] = {"builderid": builder["builderid"]}
                    return "result" in api(www, "forceschedulers/force", rpc)
                return False

            got: dict[str, Any] = {"builds": [], "forced_at": [], "shell_started_at": []}
            for count in (1, 2):
                if count == 1:
                    got["asleep_before"] = lines() == []
                got["forced_at"].append(time.time())
                assert wait_for(force, timeout=180, interval=0.5), log()

                def finished(count: int = count) -> bool:
                    builds = api(www, "builds")["builds"]
                    return len(builds) == count and all(b["complete"] for b in builds)

                assert wait_for(finished, timeout=180, interval=0.2), log()
                build = api(www, "builds")["builds"][-1]
                steps = api(www, f"builds/{build['buildid']}/steps")["steps"]
                (shell,) = [st for st in steps if st["name"] == "shell"]
                props = api(www, f"builds/{build['buildid']}/properties")["properties"][0]
                build["machine_name"] = props.get("machine_name")
                got["builds"].append(build)
                got["shell_started_at"].append(shell["started_at"])

                # asleep again before the next request
                def asleep(count: int = count) -> bool:
                    return len(lines()) == 2 * count

                assert wait_for(asleep, timeout=60), log()
            got["events"] = lines()
            got["wol_args"] = wol_args.read_text().split()
            return got
    finally:
        if master is not None:
            end_popen(master, timeout=60)
        end_popen(host)


def test_machines_side_by_side_with_buildbot(tmp_path: Path) -> None:
    # the two sides at once: each waits on its own processes most of the time
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            kind: pool.submit(_side, kind, tmp_path / kind) for kind in ("buildbot", "buildyard")
        }
        seen = {kind: future.result() for kind, future in futures.items()}
    for kind, got in seen.items():
        assert got["asleep_before"], kind
        events = got["events"]
        assert [e[0] for e in events] == ["woken", "asleep", "woken", "asleep"], kind
        for n, build in enumerate(got["builds"]):
            assert build["results"] == 0, kind
            assert build["machine_name"] == ["host1", "Worker"], kind
            (_, woken_at, pid), (_, asleep_at, slept) = events[2 * n : 2 * n + 2]
            # woken by this request, before the build's step ran (Buildbot records the build
            # first and wakes the machine inside it; buildyard wakes it while the request
            # waits, then starts the build)
            assert got["forced_at"][n] <= float(woken_at), kind
            assert float(woken_at) <= got["shell_started_at"][n] + 1, kind
            # asleep build_wait_timeout (1 s) after the build, its worker shut down
            assert slept == pid, kind
            assert float(asleep_at) >= build["complete_at"] + 1 - 0.2, kind
            assert wait_for(functools.partial(_dead, int(pid)), timeout=30), kind
    ours = seen["buildyard"]
    for n, build in enumerate(ours["builds"]):
        assert float(ours["events"][2 * n][1]) <= build["started_at"] + 1
    # the same wake-on-LAN command, once per wake
    assert seen["buildbot"]["wol_args"] == seen["buildyard"]["wol_args"] == [MAC, MAC]

"""c['machines'] side by side with stock Buildbot 4.3.0: the same master.cfg (a
GenericLatentMachine woken by LocalWOLAction, put to sleep by LocalWakeAction, its worker an
AbstractLatentWorker subclass that starts with its machine), each master with its own stand-in
host (see test_machine_wake.py) running the stock buildbot-worker over PB. Both wake the machine
with the same ``wakeonlan`` arguments before the build, build, and put the machine to sleep
``build_wait_timeout`` after.

Why not Buildbot's own ``LocalLatentWorker``: in Buildbot 4.3.0 it cannot be built
(``checkConfig`` passes ``build_wait_timeout`` twice: "got multiple values for argument
'build_wait_timeout'"), so the config defines the same worker itself."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, ended_at_exit, wait_for
from buildyard.testing.stock import buildbot_venv
from tests.e2e.test_machine_wake import HOST, MAC, _alive, _api

pytestmark = pytest.mark.e2e

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

# the stand-in host of test_machine_wake.py, starting the stock worker instead of ours
STOCK_HOST = HOST.replace(
    "[sys.executable, '-m', 'buildyard.worker.cli', 'start', '--nodaemon', workdir]",
    "[sys.argv[5], 'start', '--nodaemon', workdir]",
)


def _side(kind: str, root: Path) -> dict[str, Any]:
    """One master of ``kind`` with its host: one build; what happened."""
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
    (root / "host.py").write_text(STOCK_HOST)
    host_argv = [sys.executable, str(root / "host.py"), str(wol_port), MAC, str(workdir)]
    host = subprocess.Popen(
        [*host_argv, str(events), stock_worker],
        stdin=subprocess.DEVNULL,
    )

    def lines() -> list[list[str]]:
        return [line.split() for line in events.read_text().splitlines()] if events.exists() else []

    with (basedir / "out.log").open("ab") as out:
        master = subprocess.Popen(
            [*exe, "start", "--nodaemon", str(basedir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def log() -> str:
        paths = [basedir / n for n in ("out.log", "twistd.log", "buildyard.log")]
        return "".join(p.read_text(errors="replace") for p in paths if p.exists())[-4000:]

    def pids() -> list[int]:
        return [int(p[-1]) for p in lines() if _alive(int(p[-1]))]

    try:
        with ended_at_exit(pids):
            builderid: list[int] = []

            def forced() -> bool:
                assert master.poll() is None, log()
                with contextlib.suppress(OSError, ValueError, KeyError):
                    (builder,) = _api(www, "builders?name=hello")["builders"]
                    builderid[:] = [builder["builderid"]]
                    rpc = {"jsonrpc": "2.0", "method": "force", "id": 1}
                    rpc["params"] = {"builderid": builder["builderid"]}
                    return "result" in _api(www, "forceschedulers/force", rpc)
                return False

            asleep_before = lines() == []
            forced_at = time.time()
            assert wait_for(forced, timeout=180, interval=0.5), log()

            def finished() -> bool:
                builds = _api(www, "builds")["builds"]
                return bool(builds) and all(b["complete"] for b in builds)

            assert wait_for(finished, timeout=180, interval=0.5), log()
            (build,) = _api(www, "builds")["builds"]
            steps = _api(www, f"builds/{build['buildid']}/steps")["steps"]
            (shell,) = [st for st in steps if st["name"] == "shell"]
            assert wait_for(lambda: len(lines()) >= 2, timeout=60), log()
            return {
                "asleep_before": asleep_before,
                "forced_at": forced_at,
                "build": build,
                "shell_started_at": shell["started_at"],
                "events": lines(),
                "wol_args": wol_args.read_text().split(),
            }
    finally:
        end_popen(master, timeout=60)
        end_popen(host)


def test_machines_side_by_side_with_buildbot(tmp_path: Path) -> None:
    seen = {kind: _side(kind, tmp_path / kind) for kind in ("buildbot", "buildyard")}
    for kind, got in seen.items():
        build = got["build"]
        assert got["asleep_before"], kind
        assert build["results"] == 0, kind
        (woken, woken_at, pid), (asleep, asleep_at, slept) = got["events"][:2]
        # woken by the request, before the build started; asleep after build_wait_timeout
        assert woken == "woken" and got["forced_at"] <= float(woken_at), kind
        # (Buildbot records the build first and wakes the machine inside it; buildyard wakes it
        # while the request waits, then starts the build: the step is after the wake in both)
        assert float(woken_at) <= got["shell_started_at"] + 1, kind
        assert (asleep, slept) == ("asleep", pid), kind
        assert float(asleep_at) >= build["complete_at"] + 1 - 0.2, kind
    ours = seen["buildyard"]
    assert float(ours["events"][0][1]) <= ours["build"]["started_at"] + 1
    # the same wake-on-LAN command
    assert seen["buildbot"]["wol_args"] == seen["buildyard"]["wol_args"] == [MAC]

"""What the latent-worker end-to-end tests share (tests only): a master process whose latent
workers they drive through its REST API, the stand-in servers they start, the killed-master
round, and the side-by-side build on stock Buildbot."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, end_popen, spawn_master, wait_for
from buildyard.testing.stock import buildbot_venv

#: a master.cfg's end: a builder per name with its workers, a force scheduler, www and sqlite
TAIL = """
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['workers'] = [{workers}]
def builder(name, workers):
    return util.BuilderConfig(name=name, workernames=workers,
        factory=util.BuildFactory([steps.ShellCommand(command='echo built by $WORKERNAME')]))
c['builders'] = [{builders}]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames={names!r})]
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def api(www: int, path: str, body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{www}/api/v2/{path}",
        data=data,
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not ended (a zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@contextlib.contextmanager
def stand_in(argv: Sequence[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a stand-in server (``python -m buildyard.testing.<engine> ...``) until it prints its
    ``ready`` line; it is ended when the block is left. Its errors go to ``log``."""
    with log.open("ab") as errors:
        proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL
        )
    assert proc.stdout is not None
    try:
        with proc.stdout:
            ready = proc.stdout.readline()
        assert ready.startswith(b"ready"), log.read_text()
        yield proc
    finally:
        end_popen(proc)


class LatentMaster:
    """A master's directory: ``configure`` writes master.cfg from ``head`` (the imports and
    helpers that build the workers) and :data:`TAIL`. ``start``/``stop`` run it as a daemon;
    inside ``spawned()``, ``spawn``/``sigkill`` run it in the foreground and kill it."""

    def __init__(self, basedir: Path) -> None:
        self.basedir = basedir
        self.www = free_port()
        self.port = free_port()
        self._procs: list[subprocess.Popen[bytes]] = []
        assert buildyard("create-master", str(basedir)).returncode == 0

    def start(self) -> None:
        started = buildyard("start", str(self.basedir))
        assert started.returncode == 0, started.stderr + started.stdout + self.log()[-3000:]

    def stop(self) -> None:
        stopped = buildyard("stop", str(self.basedir))
        assert stopped.returncode == 0, stopped.stderr

    @contextlib.contextmanager
    def spawned(self) -> Iterator[None]:
        """The block's foreground runs (``spawn``) are ended when it is left."""
        try:
            yield
        finally:
            for proc in self._procs:
                end_popen(proc)

    def spawn(self) -> None:
        """``buildyard start --nodaemon``; returns once its REST API answers."""
        self._procs.append(spawn_master(self.basedir))
        assert wait_for(self.up, timeout=120), self.log()[-3000:]

    def sigkill(self) -> None:
        """Kill the running foreground master as a crash would: nothing of it cleans up."""
        proc = self._procs[-1]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def end(self) -> int:
        """Stop the running foreground master (SIGTERM); its exit code."""
        return end_popen(self._procs[-1])

    def configure(self, head: str, workers: list[str], builders: dict[str, list[str]]) -> None:
        tail = TAIL.format(
            port=self.port,
            workers=", ".join(workers),
            builders=", ".join(f"builder({n!r}, {w!r})" for n, w in builders.items()),
            names=list(builders),
            www=self.www,
        )
        (self.basedir / "master.cfg").write_text(head + tail)

    def log(self) -> str:
        return "".join(
            p.read_text()
            for p in (self.basedir / "buildyard.log", self.basedir / "out.log")
            if p.exists()
        )

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError, ValueError):
            return [int((self.basedir / "buildyard.pid").read_text())]
        return []

    def up(self) -> bool:
        with contextlib.suppress(OSError):
            return bool(api(self.www, "masters")["masters"])
        return False

    def force(self, builder: str) -> int:
        (b,) = api(self.www, f"builders?name={builder}")["builders"]
        params = {"builderid": b["builderid"]}
        rpc = {"jsonrpc": "2.0", "method": "force", "id": 1, "params": params}
        assert "result" in api(self.www, "forceschedulers/force", rpc)
        return int(b["builderid"])

    def builds(self, builderid: int) -> list[dict[str, Any]]:
        return list(api(self.www, f"builders/{builderid}/builds")["builds"])

    def finished(self, builderid: int, count: int) -> list[dict[str, Any]]:
        def done() -> bool:
            builds = self.builds(builderid)
            return len(builds) >= count and all(b["complete"] for b in builds)

        assert wait_for(done, timeout=180, interval=0.2), self.log()[-4000:]
        return self.builds(builderid)

    def connected_to(self, worker: str) -> list[Any]:
        (w,) = api(self.www, f"workers?name={worker}")["workers"]
        return list(w["connected_to"])

    def worker_of(self, build: dict[str, Any]) -> str:
        (w,) = api(self.www, f"workers/{build['workerid']}")["workers"]
        return str(w["name"])

    def output(self, build: dict[str, Any]) -> str:
        (step,) = api(self.www, f"builds/{build['buildid']}/steps")["steps"]
        (stdio,) = api(self.www, f"steps/{step['stepid']}/logs")["logs"]
        (chunk,) = api(self.www, f"logs/{stdio['logid']}/contents")["logchunks"]
        return str(chunk["content"])

    def failures(self, worker: str) -> list[str]:
        """The log lines of ``worker``'s failed starts and quarantines."""
        return [
            line
            for line in self.log().splitlines()
            if f"worker={worker}" in line
            and ("latent_worker_start_failed" in line or "latent_worker_quarantined" in line)
        ]


def worker_command(python: str) -> list[str]:
    """An image's entrypoint: make a worker directory from Buildbot's environment
    (``BUILDMASTER``, ``BUILDMASTER_PORT``, ``WORKERNAME``, ``WORKERPASS``) and run it."""
    return [
        "/bin/sh",
        "-c",
        f"{python} -m buildyard.worker.cli create-worker --quiet worker "
        '"$BUILDMASTER:$BUILDMASTER_PORT" "$WORKERNAME" "$WORKERPASS" '
        f"&& exec {python} -m buildyard.worker.cli start --nodaemon worker",
    ]


def stock_worker_command() -> list[str]:
    """The same entrypoint with the stock buildbot-worker 4.3.0 (PB), for the side-by-side
    builds."""
    exe = buildbot_venv() / "bin" / "buildbot-worker"
    return [
        "/bin/sh",
        "-c",
        f'{exe} create-worker -q worker "$BUILDMASTER:$BUILDMASTER_PORT" "$WORKERNAME" '
        f'"$WORKERPASS" && exec {exe} start --nodaemon worker',
    ]


def twin_build(kind: str, basedir: Path, config: str, www: int, gone: Callable[[], bool]) -> None:
    """Run ``config`` (a master.cfg whose web server is on port ``www``, with one builder,
    ``hello``, on a latent worker) on a ``kind`` master, ``buildbot`` (stock 4.3.0) or
    ``buildyard``: force one build, wait for its success, then for ``gone()`` (the instance
    removed after the build), and stop the master."""
    if kind == "buildbot":
        exe = [str(buildbot_venv() / "bin" / "buildbot")]
    else:
        exe = [sys.executable, "-m", "buildyard.cli.main"]
    subprocess.run([*exe, "create-master", "-q", str(basedir)], check=True, timeout=300)
    (basedir / "master.cfg").write_text(config)
    with (basedir / "out.log").open("ab") as out:
        proc = subprocess.Popen(
            [*exe, "start", "--nodaemon", str(basedir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    logs = [basedir / "out.log", basedir / "twistd.log", basedir / "buildyard.log"]

    def log() -> str:
        return "".join(p.read_text(errors="replace") for p in logs if p.exists())[-4000:]

    try:

        def forced() -> bool:
            assert proc.poll() is None, log()
            try:
                (builder,) = api(www, "builders?name=hello")["builders"]
                rpc = {"jsonrpc": "2.0", "method": "force", "id": 1}
                params = {"builderid": builder["builderid"]}
                return "result" in api(www, "forceschedulers/force", {**rpc, "params": params})
            except (OSError, ValueError, KeyError):
                return False

        assert wait_for(forced, timeout=120, interval=0.5), log()

        def finished() -> bool:
            builds = api(www, "builds")["builds"]
            return bool(builds) and all(b["complete"] for b in builds)

        assert wait_for(finished, timeout=180, interval=0.5), log()
        (build,) = api(www, "builds")["builds"]
        assert build["results"] == 0, log()
        assert wait_for(gone, timeout=120), log()
    finally:
        end_popen(proc)

"""A master process whose latent workers the tests drive through its REST API (tests only)."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from pathlib import Path
from typing import Any

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, wait_for

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


class LatentMaster:
    """A master's directory: ``configure`` writes master.cfg from ``head`` (the imports and
    helpers that build the workers) and :data:`TAIL`."""

    def __init__(self, basedir: Path) -> None:
        self.basedir = basedir
        self.www = free_port()
        self.port = free_port()
        assert buildyard("create-master", str(basedir)).returncode == 0

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

    def finished(self, builderid: int, count: int) -> list[dict[str, Any]]:
        def done() -> bool:
            builds = api(self.www, f"builders/{builderid}/builds")["builds"]
            return len(builds) >= count and all(b["complete"] for b in builds)

        assert wait_for(done, timeout=180, interval=0.2), self.log()[-4000:]
        return list(api(self.www, f"builders/{builderid}/builds")["builds"])

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

"""``worker.DockerLatentWorker`` with a real master process, against a Docker Engine API.

No engine can run containers in this sandbox (podman is installed by .ci/run, but its runtime
cannot set the rlimits a container needs here: ``crun: setrlimit RLIMIT_NOFILE: Operation not
permitted``), so the engine is :mod:`buildyard.testing.docker_engine`: a server shaped like the
Engine API whose "containers" are real processes running the container's command, here a real
buildyard-worker that connects to the master and builds.

One master shows the lifecycle: a build starts a container on demand (the request waits);
a second build within ``build_wait_timeout`` reuses it; idle past the timeout it is stopped and
removed; workers whose start fails (a missing image, a container that exits, one that never
connects within ``missing_timeout``) go into quarantine, and the request runs on the next latent
worker of the builder; a reconfig that removes a worker stops its
container, and so does the master's stop. A second master is SIGKILLed with a container running
and restarted: the container its first run left is found by its labels and removed. Side by
side, the same master.cfg on stock Buildbot 4.3.0 (whose Docker SDK client checks that the
engine stand-in answers as an engine does) and on buildyard creates the same containers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from buildyard.testing.latent import (
    LatentMaster,
    alive,
    stand_in,
    stock_worker_command,
    twin_build,
    worker_command,
)
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, ended_at_exit, wait_for

pytestmark = pytest.mark.e2e

IMAGE = "buildyard-worker:test"

# the container's command: make a worker directory from Buildbot's environment and run it
COMMAND = worker_command(sys.executable)

HEAD = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
def docker(name, image={image!r}, command={command!r}, **kw):
    return worker.DockerLatentWorker(name, None, docker_host={host!r}, image=image,
        command=command, masterFQDN='127.0.0.1', master_protocol='msgpack', **kw)
"""


class Engine:
    def __init__(self, socket: Path, proc: subprocess.Popen[bytes]) -> None:
        self.socket = socket
        self.proc = proc
        self.host = f"unix://{socket}"

    def get(self, path: str) -> Any:
        import asyncio

        async def fetch() -> Any:
            async with (
                aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(self.socket))) as s,
                s.get(f"http://docker{path}") as resp,
            ):
                return await resp.json()

        return asyncio.run(fetch())

    def containers(self, worker: str | None = None) -> list[dict[str, Any]]:
        filters = {"label": [f"buildyard.worker={worker}"]} if worker else {}
        query = urllib.parse.quote(json.dumps(filters))
        return list(self.get(f"/containers/json?all=1&filters={query}"))

    def created(self, worker: str) -> int:
        """How many containers were created for ``worker`` so far."""
        return sum(
            1
            for r in self.get("/_fake/requests")
            if r["method"] == "POST"
            and r["path"] == "/containers/create"
            and r["query"].get("name", "").startswith(f"buildbot-{worker}-")
        )

    def pid(self, container_id: str) -> int:
        return int(self.get(f"/containers/{container_id}/json")["State"]["Pid"])


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    state = tmp_path_factory.mktemp("docker")
    socket = state / "docker.sock"
    argv = [sys.executable, "-m", "buildyard.testing.docker_engine", "--socket", str(socket)]
    argv += ["--state", str(state / "containers"), "--image", IMAGE]
    with stand_in(argv, state / "engine.log") as proc:
        yield Engine(socket, proc)


def _head(engine: Engine) -> str:
    return HEAD.format(image=IMAGE, command=COMMAND, host=engine.host)


def test_docker_latent_worker_lifecycle(tmp_path: Path, engine: Engine) -> None:
    master = LatentMaster(tmp_path / "master")
    workers = [
        "docker('dock', build_wait_timeout=10)",
        "docker('broken', image='nowhere/missing:1')",
        "docker('crashing', command=['/bin/false'], check_instance_interval=1)",
        "docker('silent', command=['/bin/sleep', '600'], missing_timeout=3)",
        "docker('spare')",
    ]
    pick_workers = ["broken", "crashing", "silent", "spare"]
    master.configure(_head(engine), workers, {"hello": ["dock"], "pick": pick_workers})
    with ended_at_exit(master.pids):
        master.start()
        assert engine.containers("dock") == []  # nothing runs before a build needs it

        # a build starts a container; the request waits for it, then builds on it
        hello = master.force("hello")
        (first,) = master.finished(hello, 1)
        assert first["results"] == 0, master.log()[-4000:]
        assert master.worker_of(first) == "dock"
        assert "built by dock" in master.output(first)  # the container's environment
        assert engine.created("dock") == 1
        (container,) = engine.containers("dock")
        assert container["State"] == "running"
        assert container["Labels"]["buildyard.worker"] == "dock"

        # a second build within build_wait_timeout reuses the running container
        master.force("hello")
        builds = master.finished(hello, 2)
        assert [b["results"] for b in builds] == [0, 0]
        assert engine.created("dock") == 1
        assert [c["Id"] for c in engine.containers("dock")] == [container["Id"]]

        # the worker's data (what the UI shows) follows the instance: connected while it runs
        assert master.connected_to("dock")

        # idle past build_wait_timeout: stopped and removed, and the worker disconnected
        assert wait_for(lambda: engine.containers("dock") == [], timeout=120), master.log()[-3000:]
        assert "latent_worker_idle" in master.log()
        assert wait_for(lambda: not master.connected_to("dock"), timeout=60)

        # starts that fail quarantine their worker and leave the request waiting, not failed:
        # 'broken' has no image, the container of 'crashing' exits (check_instance sees it),
        # the one of 'silent' never connects (missing_timeout); the request runs on 'spare'
        pick = master.force("pick")
        (picked,) = master.finished(pick, 1)  # one build: no EXCEPTION build before it
        assert picked["results"] == 0, master.log()[-4000:]
        assert master.worker_of(picked) == "spare"
        for worker, why in [
            ("broken", 'Image "nowhere/missing:1" not found'),
            ("crashing", "the instance ended before its worker connected"),
            ("silent", "did not connect within missing_timeout (3 s)"),
        ]:
            failed = master.failures(worker)
            assert any(why in f for f in failed), failed
            assert any("quarantined" in f for f in failed), failed
            assert engine.containers(worker) == []  # a failed start leaves no container
        # build_wait_timeout 0 (Docker's default): the container goes after the build
        assert wait_for(lambda: engine.containers("spare") == [], timeout=120)

        # a reconfig that removes a latent worker stops its container
        master.force("hello")
        assert wait_for(lambda: len(engine.containers("dock")) == 1, timeout=120)
        master.finished(hello, 3)
        (running,) = engine.containers("dock")
        pid = engine.pid(running["Id"])
        master.configure(_head(engine), ["docker('spare')"], {"pick": ["spare"]})
        assert buildyard("reconfig", str(master.basedir)).returncode == 0
        assert wait_for(lambda: engine.containers("dock") == [], timeout=120), master.log()[-3000:]
        assert not alive(pid)

        # and the master's stop stops the container still running
        master.force("pick")
        assert wait_for(lambda: len(engine.containers("spare")) == 1, timeout=120)
        master.stop()
        assert engine.containers() == []


def test_a_restarted_master_removes_the_containers_its_killed_run_left(
    tmp_path: Path, engine: Engine
) -> None:
    master = LatentMaster(tmp_path / "master")
    master.configure(
        _head(engine), ["docker('keeper', build_wait_timeout=-1)"], {"keep": ["keeper"]}
    )
    with master.spawned():
        master.spawn()
        keep = master.force("keep")
        (build,) = master.finished(keep, 1)
        assert build["results"] == 0, master.log()[-4000:]
        (container,) = engine.containers("keeper")
        pid = engine.pid(container["Id"])

        master.sigkill()
        assert engine.containers("keeper")[0]["State"] == "running"  # left behind
        assert alive(pid)

        master.spawn()
        assert wait_for(lambda: engine.containers("keeper") == [], timeout=120), master.log()[
            -3000:
        ]
        assert not alive(pid)
        assert "docker_orphan_removed" in master.log()
        assert master.end() == 0


# The same worker for both masters: the stock buildbot-worker, over PB, in the "container".
TWIN_CONFIG = """\
from buildbot.plugins import *
c = BuildmasterConfig = {{}}
c['protocols'] = {{'pb': {{'port': 'tcp:{pb}:interface=127.0.0.1'}}}}
c['workers'] = [worker.DockerLatentWorker('twin', None, docker_host={host!r}, image={image!r},
    command={command!r}, masterFQDN='127.0.0.1', volumes=['/srv/cache:/cache:ro'],
    hostname='twin-host')]
c['builders'] = [util.BuilderConfig(name='hello', workernames=['twin'],
    factory=util.BuildFactory([steps.ShellCommand(command='echo twin')]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['hello'])]
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def _twin_build(kind: str, basedir: Path, engine: Engine) -> list[dict[str, Any]]:
    """Run one build of TWIN_CONFIG on a ``kind`` master; the engine requests it made."""
    before = len(engine.get("/_fake/requests"))
    www = free_port()
    config = TWIN_CONFIG.format(
        pb=free_port(), host=engine.host, image=IMAGE, command=stock_worker_command(), www=www
    )

    # build_wait_timeout is 0 for Docker in both: the container goes after the build
    def gone() -> bool:
        names = [n for c in engine.containers() for n in c["Names"]]
        return not any(n.startswith("/buildbot-twin-") for n in names)

    twin_build(kind, basedir, config, www, gone)
    return list(engine.get("/_fake/requests"))[before:]


def test_docker_latent_worker_side_by_side_with_buildbot(tmp_path: Path, engine: Engine) -> None:
    """The same master.cfg on stock Buildbot 4.3.0 (its Docker SDK client) and on buildyard,
    against the same engine: each builds on a fresh container running the stock worker, and the
    containers are created alike."""
    seen = {kind: _twin_build(kind, tmp_path / kind, engine) for kind in ("buildbot", "buildyard")}

    def container_calls(requests: list[dict[str, Any]]) -> list[str]:
        calls = []
        for r in requests:
            path = re.sub(r"^/containers/[0-9a-f]{64}", "/containers/ID", r["path"])
            if path.startswith("/containers/") and path != "/containers/json":
                calls.append(f"{r['method']} {path}")
        return calls

    # the container's life: the same calls in the same order
    assert (
        container_calls(seen["buildbot"])
        == container_calls(seen["buildyard"])
        == [
            "POST /containers/create",
            "POST /containers/ID/start",
            "POST /containers/ID/stop",
            "POST /containers/ID/wait",
            "DELETE /containers/ID",
        ]
    )
    creates = {
        kind: next(r for r in requests if r["path"] == "/containers/create")
        for kind, requests in seen.items()
    }
    for create in creates.values():
        assert re.fullmatch(r"buildbot-twin-[0-9a-f]{6}", create["query"]["name"])
    stock, ours = creates["buildbot"]["body"], creates["buildyard"]["body"]
    for body in (stock, ours):
        env = dict(e.split("=", 1) for e in body["Env"])
        assert set(env) == {
            "BUILDMASTER",
            "BUILDMASTER_PORT",
            "BUILDMASTER_PROTOCOL",
            "WORKERNAME",
            "WORKERPASS",
        }
        assert (env["BUILDMASTER"], env["BUILDMASTER_PROTOCOL"], env["WORKERNAME"]) == (
            "127.0.0.1",
            "pb",
            "twin",
        )
    for key in ("Image", "Cmd", "Hostname", "Volumes"):
        assert stock[key] == ours[key], key
    for key in ("Binds", "Init"):
        assert stock["HostConfig"][key] == ours["HostConfig"][key], key
    # on purpose: buildyard labels its containers to find them after the master is killed
    assert not stock.get("Labels")
    assert set(ours["Labels"]) == {"buildyard.master", "buildyard.worker"}

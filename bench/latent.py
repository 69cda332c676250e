"""Latent workers, buildyard vs stock Buildbot 4.3.0 side by side: the time from a build request
to its build starting, split into the engine's share and the master's own.

Both masters run at once, each its own process (``buildyard start --nodaemon``, ``buildbot start
--nodaemon``) from the same master.cfg text, against the same Docker Engine stand-in
(``buildyard.testing.docker_engine``: the Engine API's shape, each "container" a real process).
Two builders each:

- ``docker``: a ``DockerLatentWorker`` (``build_wait_timeout=0``, so every build gets a fresh
  container) whose container runs the stock buildbot-worker 4.3.0 over PB, through a small
  wrapper that notes when the container's process started and when its worker's TCP connection
  to the master was established (polling ``/proc/net/tcp``).
- ``local``: a ``LocalWorker`` (Buildbot runs it inside the master's process, buildyard as a
  child process): no engine, the master's overhead alone.

Each round forces one build per builder per master through the REST API, the two masters in
alternating order, one build at a time, each waited for (and its container gone) before the
next. Measured per build, in wall-clock seconds:

- ``total``: from the force request to the build's first command running on the worker (the
  command writes the time);
- ``engine`` (docker only): from the engine receiving ``POST /containers/create`` to the
  worker's connection being established: the engine's work, the process start, the worker's
  own start-up and connect, which buildyard cannot make faster;
- ``ours``: ``total - engine``: the master's part (scheduling, asking the engine, noticing the
  worker, starting the build).

Reports the medians per master and the ratio Buildbot/buildyard (>1: buildyard is faster). The
machine's load is printed: both masters share its CPUs, and other work on it adds noise.

    .venv/bin/python bench/latent.py --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen
from buildyard.testing.stock import buildbot_venv

IMAGE = "bench-worker:latest"

CONFIG = """\
from buildbot.plugins import *
c = BuildmasterConfig = {{}}
c['protocols'] = {{'pb': {{'port': 'tcp:{pb}:interface=127.0.0.1'}}}}
c['workers'] = [
    worker.DockerLatentWorker('twin', None, docker_host={host!r}, image={image!r},
        command={command!r}, masterFQDN='127.0.0.1', build_wait_timeout=0),
    worker.LocalWorker('lw'),
]
# the first command notes the time; the docker builder's then holds its container a moment
# (build_wait_timeout=0 stops it as the build ends), so that the container's own note of its
# worker's connection is made before it is stopped, however busy the machine
def mark(path, hold=0):
    return util.BuildFactory([steps.ShellCommand(
        command=['sh', '-c', 'date +%s.%N >> ' + path + '; sleep ' + str(hold)])])
c['builders'] = [
    util.BuilderConfig(name='docker', workernames=['twin'], factory=mark({docker_mark!r}, hold=3)),
    util.BuilderConfig(name='local', workernames=['lw'], factory=mark({local_mark!r})),
]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['docker', 'local'])]
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotNetUsageData'] = None
"""

# The container's command: note when it started, run the stock worker, note when its connection
# to the master is established (a new ESTABLISHED entry towards the master's port).
WRAPPER = """\
import os, subprocess, sys, time
started = time.time()
times, exe = sys.argv[1], sys.argv[2]
port = int(os.environ['BUILDMASTER_PORT'])
suffix = ':%04X' % port

def established():
    found = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[2].endswith(suffix) and fields[3] == '01':
                found.add((fields[1], fields[9]))  # address and inode: a reused port is new
    return found

before = established()
subprocess.run([exe, 'create-worker', '-q', 'worker',
                os.environ['BUILDMASTER'] + ':' + str(port),
                os.environ['WORKERNAME'], os.environ['WORKERPASS']], check=True)
child = subprocess.Popen([exe, 'start', '--nodaemon', 'worker'])
connected = None
deadline = time.time() + 120
while connected is None and time.time() < deadline and child.poll() is None:
    if established() - before:
        connected = time.time()
        break
    time.sleep(0.002)
with open(times, 'a') as out:
    out.write('%r %r\\n' % (started, connected))
sys.exit(child.wait())
"""


def _api(www: int, path: str, body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{www}/api/v2/{path}",
        data=data,
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _wait(done: Any, timeout: float, what: str, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} after {timeout}s")
        time.sleep(interval)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


class Engine:
    def __init__(self, root: Path) -> None:
        self.socket = root / "docker.sock"
        argv = [sys.executable, "-m", "buildyard.testing.docker_engine"]
        argv += ["--socket", str(self.socket), "--state", str(root / "containers")]
        argv += ["--image", IMAGE]
        with (root / "engine.log").open("ab") as errors:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL
            )
        assert self.proc.stdout is not None
        with self.proc.stdout:
            ready = self.proc.stdout.readline()
        if not ready.startswith(b"ready"):
            raise RuntimeError((root / "engine.log").read_text())
        self.host = f"unix://{self.socket}"

    def get(self, path: str) -> Any:
        import asyncio

        async def fetch() -> Any:
            connector = aiohttp.UnixConnector(path=str(self.socket))
            async with (
                aiohttp.ClientSession(connector=connector) as s,
                s.get(f"http://docker{path}") as resp,
            ):
                return await resp.json()

        return asyncio.run(fetch())

    def creates_after(self, since: float) -> list[float]:
        return [
            r["time"]
            for r in self.get("/_fake/requests")
            if r["method"] == "POST" and r["path"] == "/containers/create" and r["time"] >= since
        ]

    def containers(self) -> list[Any]:
        query = urllib.parse.quote(json.dumps({}))
        return list(self.get(f"/containers/json?all=1&filters={query}"))


class Side:
    """One master kind, in its own directory, against the shared engine."""

    def __init__(self, kind: str, root: Path, engine: Engine, wrapper: Path) -> None:
        self.kind = kind
        self.engine = engine
        self.basedir = root / "master"
        self.www = free_port()
        self.docker_mark = root / "docker.mark"
        self.local_mark = root / "local.mark"
        self.times = root / "container.times"
        self.prefix = "/buildbot-twin-"
        root.mkdir(parents=True)
        if kind == "buildbot":
            exe = [str(buildbot_venv() / "bin" / "buildbot")]
        else:
            exe = [sys.executable, "-m", "buildyard.cli.main"]
        subprocess.run(
            [*exe, "create-master", "-q", str(self.basedir)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        stock_worker = str(buildbot_venv() / "bin" / "buildbot-worker")
        (self.basedir / "master.cfg").write_text(
            CONFIG.format(
                pb=free_port(),
                host=engine.host,
                image=IMAGE,
                command=[sys.executable, str(wrapper), str(self.times), stock_worker],
                docker_mark=str(self.docker_mark),
                local_mark=str(self.local_mark),
                www=self.www,
            )
        )
        with (self.basedir / "out.log").open("ab") as out:
            self.proc = subprocess.Popen(
                [*exe, "start", "--nodaemon", str(self.basedir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.builderids: dict[str, int] = {}

    def log(self) -> str:
        paths = [self.basedir / n for n in ("out.log", "twistd.log", "buildyard.log")]
        return "".join(p.read_text(errors="replace") for p in paths if p.exists())[-4000:]

    def ready(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log()}")
            with contextlib.suppress(OSError, ValueError):
                builders = _api(self.www, "builders")["builders"]
                self.builderids = {b["name"]: b["builderid"] for b in builders}
                # the local worker connected: the local builder can build at once
                workers = _api(self.www, "workers?name=lw")["workers"]
                return len(self.builderids) == 2 and bool(workers and workers[0]["connected_to"])
            return False

        _wait(up, 300, f"{self.kind} master up", interval=0.2)

    def build(self, builder: str) -> dict[str, float]:
        mark = self.docker_mark if builder == "docker" else self.local_mark
        marks, times = len(_lines(mark)), len(_lines(self.times))
        before = len(_api(self.www, f"builders/{self.builderids[builder]}/builds")["builds"])
        rpc = {"jsonrpc": "2.0", "method": "force", "id": 1}
        rpc["params"] = {"builderid": self.builderids[builder]}
        forced = time.time()
        if "result" not in _api(self.www, "forceschedulers/force", rpc):
            raise RuntimeError(f"{self.kind}: force refused")
        _wait(lambda: len(_lines(mark)) > marks, 180, f"{self.kind} {builder} build started")
        first_command = float(_lines(mark)[marks])
        result = {"total": first_command - forced}
        if builder == "docker":
            # the container notes its worker's connection within 120 s or gives up (None)
            _wait(lambda: len(_lines(self.times)) > times, 150, f"{self.kind} container times")
            _started, connected = _lines(self.times)[times].split()
            if connected == "None":
                raise RuntimeError(f"{self.kind}: the container never saw its worker connect")
            (created, *_) = self.engine.creates_after(forced)
            result["engine"] = float(connected) - created
            result["ours"] = result["total"] - result["engine"]
        else:
            result["ours"] = result["total"]

        def finished() -> bool:
            builds = _api(self.www, f"builders/{self.builderids[builder]}/builds")["builds"]
            return len(builds) > before and all(b["complete"] for b in builds)

        _wait(finished, 180, f"{self.kind} {builder} build finished", interval=0.05)

        def gone() -> bool:
            names = [n for c in self.engine.containers() for n in c["Names"]]
            return not any(n.startswith(self.prefix) for n in names)

        _wait(gone, 120, f"{self.kind} container removed", interval=0.05)
        return result

    def stop(self) -> None:
        end_popen(self.proc, timeout=60)


def run(
    rounds: int, root: Path, *, warmup: int = 1
) -> dict[str, dict[str, dict[str, list[float]]]]:
    wrapper = root / "container.py"
    wrapper.write_text(WRAPPER)
    engine = Engine(root)
    sides: list[Side] = []
    seen: dict[str, dict[str, dict[str, list[float]]]] = {}
    try:
        for kind in ("buildyard", "buildbot"):
            sides.append(Side(kind, root / kind, engine, wrapper))
        for side in sides:
            side.ready()
        # first builds, not counted: the first container and imports warm up
        for _ in range(warmup):
            for side in sides:
                for builder in ("local", "docker"):
                    side.build(builder)
        for n in range(rounds):
            order = sides if n % 2 == 0 else sides[::-1]
            for side in order:
                for builder in ("local", "docker"):
                    got = side.build(builder)
                    for key, value in got.items():
                        seen.setdefault(builder, {}).setdefault(side.kind, {}).setdefault(
                            key, []
                        ).append(value)
    finally:
        for side in sides:
            side.stop()
        end_popen(engine.proc)
    return seen


def report(seen: dict[str, dict[str, dict[str, list[float]]]], rounds: int) -> None:
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} ({os.cpu_count()} CPUs)")
    print(f"{rounds} rounds; medians in ms; ratio = Buildbot / buildyard (>1: buildyard faster)")
    for builder, by_kind in seen.items():
        print(f"\n{builder}:")
        keys = ["total", "engine", "ours"] if builder == "docker" else ["total"]
        for key in keys:
            ours = statistics.median(by_kind["buildyard"][key]) * 1000
            theirs = statistics.median(by_kind["buildbot"][key]) * 1000
            ratio = theirs / ours if ours > 0 else float("inf")
            print(f"  {key:<7} buildyard {ours:9.1f}   buildbot {theirs:9.1f}   ratio {ratio:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="uncounted builds first")
    parser.add_argument("--json", type=Path, help="write every sample there too")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 100:
        parser.error("--rounds must be between 1 and 100")
    if not 0 <= args.warmup <= 10:
        parser.error("--warmup must be between 0 and 10")
    with tempfile.TemporaryDirectory(prefix="bench-latent-") as tmp:
        seen = run(args.rounds, Path(tmp), warmup=args.warmup)
    report(seen, args.rounds)
    if args.json is not None:
        args.json.write_text(json.dumps(seen, indent=1))


if __name__ == "__main__":
    main()

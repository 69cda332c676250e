"""steps.SVN side by side with stock Buildbot 4.3.0: the same master.cfg on a Buildbot master
and on a buildyard master, each with its own stock buildbot-worker 4.3.0 (msgpack), the same
forced builds against one Subversion repository: the same results, got_revision and trees on
the workers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen
from buildyard.testing.svn import SvnRepo, svn_available
from buildyard.testing.workers import start_worker
from tests.e2e.test_change_hooks_buildbot import Master, _start

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not svn_available(), reason="needs subversion"),
]

BUILDERS = ("inc", "fresh", "clean", "export", "last")

CONFIG = """\
from buildbot.plugins import *

c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': WORKER_PORT}}}}
URL = REPOURL


def builder(name, step):
    return util.BuilderConfig(name=name, workernames=['w1'], factory=util.BuildFactory([step]))


c['builders'] = [
    builder('inc', steps.SVN(repourl=URL)),
    builder('fresh', steps.SVN(repourl=URL, mode='full', keep_on_purge=['keep.txt'])),
    builder('clean', steps.SVN(repourl=URL, mode='full', method='clean')),
    builder('export', steps.SVN(repourl=URL, mode='full', method='export')),
    builder('last', steps.SVN(repourl=URL, preferLastChangedRev=True)),
]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=BUILDERS)]
c['www'] = {{'port': 'tcp:{www_port}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotNetUsageData'] = None
"""


def _wait(condition: Callable[[], bool], what: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds} s for {what}")
        time.sleep(0.2)


def _connected(master: Master) -> Callable[[], bool]:
    return lambda: any(w["connected_to"] for w in master.get("workers")["workers"])


def _builds(master: Master, builder: str) -> list[dict[str, Any]]:
    (found,) = master.get(f"builders?name={builder}")["builders"]
    return list(master.get(f"builders/{found['builderid']}/builds")["builds"])


def _force(master: Master, builder: str, revision: str = "") -> dict[str, Any]:
    """Force one build of ``builder`` and wait until it ended; the build."""
    before = len(_builds(master, builder))
    (found,) = master.get(f"builders?name={builder}")["builders"]
    status, answer = master.request(
        "/api/v2/forceschedulers/force",
        (
            '{"jsonrpc": "2.0", "method": "force", "id": 1, "params": '
            f'{{"builderid": {found["builderid"]}, "revision": "{revision}"}}}}'
        ).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200 and '"result"' in answer, (master.kind, answer)

    def done() -> bool:
        builds = _builds(master, builder)
        return len(builds) > before and all(b["complete"] for b in builds)

    _wait(done, f"{master.kind}'s build of {builder}")
    return max(_builds(master, builder), key=lambda b: int(b["number"]))


def _tree(path: Path) -> list[str]:
    """The files and directories under ``path``, without what is inside ``.svn``."""
    return sorted(
        str(p.relative_to(path))
        for p in path.rglob("*")
        if ".svn" not in p.relative_to(path).parts[:-1]
    )


def _outcome(master: Master, worker_dir: Path, builder: str, revision: str = "") -> Any:
    build = _force(master, builder, revision)
    (props,) = master.get(f"builds/{build['buildid']}/properties")["properties"]
    steps = master.get(f"builds/{build['buildid']}/steps")["steps"]
    return (
        builder,
        build["results"],
        # (Buildbot adds a worker_preparation step of its own before the build's steps)
        [
            (s["name"], s["results"], s["state_string"])
            for s in steps
            if s["name"] != "worker_preparation"
        ],
        props.get("got_revision", [None])[0],
        _tree(worker_dir / builder / "build"),
    )


@pytest.mark.timeout(900)
def test_the_same_builds_check_out_the_same_trees(tmp_path: Path) -> None:
    repo = SvnRepo(tmp_path / "repo")
    first = repo.commit("layout", {"trunk/a.txt": "one\n", "trunk/d/b.txt": "b\n"}, dirs=("br",))
    repo.svn("propset", "-q", "svn:ignore", "*.o", "trunk")
    repo.svn("commit", "-q", "-m", "ignore objects")
    repo.svn("update", "-q")
    masters: list[Master] = []
    workers: list[Any] = []
    dirs: dict[str, Path] = {}
    try:
        for kind in ("buildbot", "buildyard"):
            port = free_port()
            config = (
                CONFIG.replace("WORKER_PORT", str(port))
                .replace("REPOURL", repr(f"{repo.url}/trunk"))
                .replace("BUILDERS", repr(list(BUILDERS)))
            )
            master = _start(kind, tmp_path / kind, config)
            masters.append(master)
            dirs[kind] = tmp_path / f"worker-{kind}"
            workers.append(start_worker("stock", dirs[kind], port, "w1", "pw"))
            _wait(_connected(master), f"the worker of the {kind} master")

        def round_of_builds(revision: str = "") -> list[list[Any]]:
            found: list[list[Any]] = []
            for master in masters:
                found.append([_outcome(master, dirs[master.kind], b, revision) for b in BUILDERS])
            return found

        outcomes = [round_of_builds()]
        for kind, worker_dir in dirs.items():
            for name in BUILDERS:
                build_dir = worker_dir / name / "build"
                for junk in ("junk.txt", "obj.o", "keep.txt"):
                    (build_dir / junk).write_text(kind)
        head = repo.commit("two", {"trunk/a.txt": "two\n", "trunk/d/b.txt": None})
        repo.commit("elsewhere", {"br/x.txt": "x\n"})
        outcomes.append(round_of_builds())
        outcomes.append(round_of_builds(first))
        for theirs, ours in outcomes:
            assert ours == theirs
        # and what they agree on is what each method means
        latest = {o[0]: o for o in outcomes[1][1]}
        assert latest["inc"][3] == str(int(head) + 1)  # the newest revision
        assert latest["last"][3] == head  # trunk's last change
        assert latest["inc"][4] == sorted([".svn", "a.txt", "d", "junk.txt", "keep.txt", "obj.o"])
        assert "keep.txt" in latest["fresh"][4] and "obj.o" not in latest["fresh"][4]
        assert "obj.o" in latest["clean"][4] and "junk.txt" not in latest["clean"][4]
        assert latest["export"][4] == ["a.txt", "d"]
        assert [o[3] for o in outcomes[2][1]] == [first] * len(BUILDERS)
    finally:
        for proc in workers:
            end_popen(proc)
        for master in masters:
            end_popen(master.proc)

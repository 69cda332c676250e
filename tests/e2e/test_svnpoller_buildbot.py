"""SVNPoller side by side with stock Buildbot 4.3.0: one Subversion repository, polled by a
Buildbot master and by a buildyard master with the same master.cfg, gives the same changes
(every field but the ids and the time of the poll, read through each one's REST API)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from buildyard.testing.processes import end_popen
from buildyard.testing.svn import SvnRepo, svn_available
from tests.e2e.test_change_hooks_buildbot import Master, _comparable, _start

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not svn_available(), reason="needs subversion"),
]

CONFIG = """\
from buildbot.plugins import *

c = BuildmasterConfig = {{}}
# Buildbot refuses a master without workers, builders or schedulers: one of each, never used
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {worker_port}}}}}
c['builders'] = [
    util.BuilderConfig(name='b', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b'])]
c['change_source'] = [
    changes.SVNPoller(REPOURL, split_file=util.svn.split_file_branches, pollInterval=2,
                      pollAtLaunch=True, project='proj', category='cat',
                      revlinktmpl='https://svn.example.org/r/%s'),
]
c['www'] = {{'port': 'tcp:{www_port}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotNetUsageData'] = None
"""

# what each master logs once its first poll recorded the starting revision
STARTED = {"buildbot": "SVNPoller: starting at change", "buildyard": "svnpoller_starting"}


def _wait(condition: Callable[[], bool], what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds} s for {what}")
        time.sleep(0.2)


def _log_of(master: Master) -> str:
    paths = [master.log, master.log.parent / "out.log"]
    return "".join(p.read_text(errors="replace") for p in paths if p.exists())


def _started(master: Master) -> Callable[[], bool]:
    return lambda: STARTED[master.kind] in _log_of(master)


def _has_changes(master: Master, count: int) -> Callable[[], bool]:
    return lambda: len(master.changes()) >= count


@pytest.mark.timeout(600)
def test_the_same_commits_give_the_same_changes(tmp_path: Path) -> None:
    repo = SvnRepo(tmp_path / "repo")
    repo.commit("layout", {"trunk/a.c": "a\n"}, dirs=("branches", "tags"))
    config = CONFIG.replace("REPOURL", repr(repo.url))
    masters: list[Master] = []
    try:
        for kind in ("buildbot", "buildyard"):
            masters.append(_start(kind, tmp_path / kind, config))
        for master in masters:
            _wait(_started(master), f"{master.kind}'s first poll")

        repo.commit("on trunk", {"trunk/a.c": "a2\n", "trunk/sub/b.c": "b\n"}, author="bob")
        repo.copy("trunk", "branches/dev", "branch dev", author="cy")
        repo.commit("on both\n\nwith a body", {"trunk/a.c": "a3\n", "branches/dev/d.c": "d\n"})
        repo.copy("trunk", "tags/v1", "tag v1")
        repo.remove("branches/dev", "drop dev")
        repo.commit("last", {"trunk/sub/b.c": None}, author="dee")
        # trunk, the branch, the two halves of "on both", the last one: five changes each
        expected = 5
        for master in masters:
            _wait(_has_changes(master, expected), f"{master.kind}'s changes")
        theirs, ours = ([_comparable(c) for c in m.changes()] for m in masters)
        for change in [*theirs, *ours]:
            # the time of the poll (Buildbot does not use svn's dates either)
            assert isinstance(change.pop("when_timestamp"), int)
        assert len(ours) == len(theirs) == expected
        differences = [
            f"change {i} {key}: buildbot {theirs[i].get(key)!r}, buildyard {ours[i].get(key)!r}"
            for i in range(expected)
            for key in sorted(set(ours[i]) | set(theirs[i]))
            if ours[i].get(key) != theirs[i].get(key)
        ]
        assert not differences, "\n".join(differences)
        summary: list[tuple[Any, ...]] = [
            (c["revision"], c["branch"], c["files"], c["author"]) for c in ours
        ]
        assert summary == [
            ("2", None, ["a.c", "sub", "sub/b.c"], "bob"),
            ("3", "branches/dev", [""], "cy"),
            ("4", "branches/dev", ["d.c"], "ann"),
            ("4", None, ["a.c"], "ann"),
            ("7", None, ["sub/b.c"], "dee"),
        ]
    finally:
        for master in masters:
            end_popen(master.proc)

"""HgPoller side by side with stock Buildbot 4.3.0: a Buildbot master and a buildyard master poll
the same Mercurial repository (each into its own workdir) and record the same changes, every
field read through each one's REST API.

Where they differ on purpose: the state ``lastRev`` names the same changesets, by the
workdir's local revision number in Buildbot and by full hash in buildyard (a hash does not
depend on the workdir; docs/divergences.md).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from buildyard.testing.processes import end_popen
from tests.e2e.test_change_hooks_buildbot import Master, _comparable, _start
from tests.master.changes.test_hgpoller import HgUpstream

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildbot.plugins import *

c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {worker_port}}}}}
c['builders'] = [
    util.BuilderConfig(name='b', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b'])]
c['change_source'] = [
    changes.HgPoller(
        repourl=UPSTREAM, branches=['default', 'stable'], workdir='hg-work',
        pollInterval=3600, pollAtLaunch=True, project='lamp', category='hg',
        revlink=lambda branch, rev: 'https://hg.example.org/' + branch + '/rev/' + rev,
    ),
]
c['www'] = {{
    'port': 'tcp:{www_port}:interface=127.0.0.1',
    'change_hook_dialects': {{'poller': True}},
}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotNetUsageData'] = None
"""


def _state(basedir: Path) -> dict[str, str]:
    """The poller's lastRev, read from the master's database (both keep Buildbot's tables)."""
    with sqlite3.connect(basedir / "state.sqlite") as db:
        rows = db.execute(
            "SELECT s.value_json FROM object_state s JOIN objects o ON o.id = s.objectid"
            " WHERE o.class_name = 'HgPoller' AND s.name = 'lastRev'"
        ).fetchall()
    return json.loads(rows[0][0]) if rows else {}


def _wait(what: str, condition: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> HgUpstream:
    repo = HgUpstream(tmp_path_factory.mktemp("hg") / "upstream")
    repo.commit("initial", {"README": "lamp\n"})
    repo.hg("branch", "-q", "stable")
    repo.commit("stable starts")
    repo.hg("update", "-q", "default")
    return repo


@pytest.fixture(scope="module")
def masters(
    tmp_path_factory: pytest.TempPathFactory, upstream: HgUpstream
) -> Iterator[tuple[Master, Master]]:
    root = tmp_path_factory.mktemp("hgpoller")
    started: list[Master] = []
    prelude = f"UPSTREAM = {upstream.url!r}\n".replace("{", "{{").replace("}", "}}")
    try:
        for kind in ("buildbot", "buildyard"):
            started.append(_start(kind, root / kind, prelude + CONFIG))
        yield started[0], started[1]
    finally:
        for master in started:
            end_popen(master.proc)


def _basedir(master: Master) -> Path:
    return master.log.parent


def _polled_once(master: Master) -> Callable[[], bool]:
    return lambda: set(_state(_basedir(master))) == {"default", "stable"}


def _has_changes(master: Master, count: int) -> Callable[[], bool]:
    return lambda: len(master.changes()) >= count


def test_the_same_changes_as_buildbot(masters: tuple[Master, Master], upstream: HgUpstream) -> None:
    # pollAtLaunch: the first poll records the heads, no change
    for master in masters:
        _wait(f"the {master.kind} poller's first poll", _polled_once(master))
        assert master.changes() == []

    fix = upstream.commit(
        "Fix the lamp\n\nIt flickered.\n",
        {"src/lamp.c": "int lamp;\n", "doc/lamp.md": "# Lamp\n"},
        author="Ünï Cödé <u@example.org>",
    )
    again = upstream.commit("and again")
    upstream.hg("update", "-q", "stable")
    backport = upstream.commit("backport", {"src/lamp.c": "int lamp = 1;\n"})
    upstream.hg("update", "-q", "default")
    name = f"{upstream.url}_default_stable"
    for master in masters:
        query = urllib.parse.urlencode({"poller": name})
        status, _ = master.request(f"/change_hook/poller?{query}", b"", {})
        assert status == 200
    for master in masters:
        _wait(f"3 changes on the {master.kind} master", _has_changes(master, 3))
    theirs, ours = ([_comparable(c) for c in m.changes()] for m in masters)
    differences = [
        f"change {i} {key}: buildbot {theirs[i].get(key)!r}, buildyard {ours[i].get(key)!r}"
        for i in range(max(len(ours), len(theirs)))
        for key in sorted(set(ours[i]) | set(theirs[i]))
        if ours[i].get(key) != theirs[i].get(key)
    ]
    assert not differences, "\n".join(differences)
    assert [c["revision"] for c in ours] == [fix, again, backport]
    assert ours[0]["author"] == "Ünï Cödé <u@example.org>"
    assert ours[0]["comments"] == "Fix the lamp\n\nIt flickered."
    assert ours[0]["files"] == ["doc/lamp.md", "src/lamp.c"]
    assert ours[2]["branch"] == "stable"
    assert ours[2]["revlink"] == f"https://hg.example.org/stable/rev/{backport}"

    # the state names the same changesets: Buildbot by its workdir's numbers, ours by hash
    bb_state = _state(_basedir(masters[0]))
    bb_work = _basedir(masters[0]) / "hg-work"
    resolved = {
        branch: subprocess.run(
            ["hg", "log", "-R", str(bb_work), "-r", rev, "-T", "{node}"],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "HGPLAIN": "1"},
        ).stdout
        for branch, rev in bb_state.items()
    }
    assert resolved == _state(_basedir(masters[1])) == {"default": again, "stable": backport}

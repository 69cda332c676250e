"""A Buildbot master directory moved to buildyard: its history, its poller, its Nightly.

Four moves (a session fixture, shared by the tests below, the four run at once): Buildbot 4.3.0
and Buildbot 3.11.9 (whose schema lacks what 4.0 and 4.3 added), each on SQLite and on
PostgreSQL. In each, a stock Buildbot master
with a stock worker, a GitPoller on a local git repository, a SingleBranchScheduler and a
Nightly builds a commit and a Nightly firing; its REST API's answers are captured; it stops.
Then a commit lands while no master runs, the Nightly's next time passes,
``buildyard upgrade-master`` takes the directory as it is (master.cfg included) and
``buildyard start`` runs it with the same stock worker.

What must hold afterwards: the REST API serves every old build, step, log line and change as
Buildbot served them; the GitPoller turns the commit made during the move into a change (and
nothing older); the Nightly fires once for the time it missed while no master ran, never again
for the one Buildbot served.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import sqlite3
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from buildyard.testing.postgres import PostgresServer, free_port
from buildyard.testing.processes import buildyard, end_popen, spawn_master, wait_for
from buildyard.testing.stock import buildbot3_venv, buildbot_venv
from buildyard.testing.workers import start_worker

# the shared fixture waits for a Nightly's minute, then the next one: up to three minutes
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900), pytest.mark.xdist_group("adopt")]

# One master.cfg for both masters; the Nightly's minutes come from nightly.json, the ports,
# repository and database from adopt.json (files, not the environment: the four moves
# run at once, in threads of one test process).
CONFIG = """\
import json, os
from buildbot.plugins import *

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, 'nightly.json')) as f:
    minutes = json.load(f)
with open(os.path.join(here, 'adopt.json')) as f:
    adopt = json.load(f)

c = BuildmasterConfig = {}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {'msgpack_experimental_v7': {'port': adopt['worker_port']}}
c['change_source'] = [changes.GitPoller(repourl=adopt['repo'], branches=['main'],
                                        pollInterval=1, pollAtLaunch=True)]
factory = util.BuildFactory([
    steps.ShellCommand(name='hello', command=['sh', '-c',
                       'echo out one; echo err one >&2; seq 1 2500; printf "no newline"']),
    steps.SetPropertyFromCommand(name='prop', command=['echo', 'value'], property='got'),
])
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=factory)]
c['schedulers'] = [
    schedulers.SingleBranchScheduler(name='on-commit',
                                     change_filter=util.ChangeFilter(branch='main'),
                                     treeStableTimer=None, builderNames=['b']),
    schedulers.Nightly(name='nightly', builderNames=['b'], minute=minutes),
]
c['www'] = {'port': 'tcp:%s:interface=127.0.0.1' % adopt['www_port']}
c['buildbotURL'] = 'http://127.0.0.1:%s/' % adopt['www_port']
c['db'] = {'db_url': adopt['db_url']}
c['logCompressionMethod'] = 'bz2'
c['buildbotNetUsageData'] = None
"""

# Appended to buildbot.tac: Buildbot's msgpack listener takes only a port and binds every
# interface; keep it on the loopback interface.
TAC_LOOPBACK = """
from buildbot.worker.protocols.manager import msgpack as _adopt_msgpack

_adopt_init = _adopt_msgpack.Dispatcher.__init__


def _adopt_loopback_init(self, config_portstr, portstr):
    _adopt_init(self, config_portstr, portstr)
    self.portstr = portstr + ':interface=127.0.0.1'


_adopt_msgpack.Dispatcher.__init__ = _adopt_loopback_init
"""

START_TIMEOUT = 300.0
BUILD_TIMEOUT = 300.0
NIGHTLY_MARGIN = 60.0  # seconds for Buildbot to start before its Nightly's first time


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ann",
        "GIT_AUTHOR_EMAIL": "ann@example.org",
        "GIT_COMMITTER_NAME": "Ann",
        "GIT_COMMITTER_EMAIL": "ann@example.org",
    }
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True, timeout=60
    )
    return done.stdout.strip()


def _commit(repo: Path, message: str) -> str:
    (repo / "file.txt").write_text(message + "\n")
    _git(repo, "add", "file.txt")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def _query(db_url: str, basedir: Path, sql: str) -> list[tuple[Any, ...]]:
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(f"file:{basedir / 'state.sqlite'}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    async def fetch() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(db_url)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def _execute(db_url: str, basedir: Path, sql: str) -> None:
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(basedir / "state.sqlite", timeout=10)
        try:
            with conn:
                conn.execute(sql)
        finally:
            conn.close()
        return

    async def run() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _repair_interrupted_poll(m: Moved) -> None:
    """Buildbot 4.3.0 stopped in the middle of a GitPoller poll (its poll interval here is one
    second) can store the poller's ``lastRev`` as ``{}`` (seen in CI: the copy upgrade-master
    keeps had it). An empty lastRev makes any poller's next poll a first one, which records the
    heads and makes no change, so the commit made during the move would be lost by Buildbot's
    doing, not the move's: put back the head Buildbot had seen."""
    head = json.dumps({"main": m.commits_before[-1]}).replace("'", "''")
    _execute(
        m.db_url,
        m.basedir,
        f"UPDATE object_state SET value_json = '{head}' WHERE name = 'lastRev' "
        "AND value_json = '{}' AND objectid IN "
        "(SELECT id FROM objects WHERE class_name = 'GitPoller')",
    )


def _get(base: str, path: str) -> Any:
    # Buildbot 4.3.0, loaded, has cut an answer short (IncompleteRead) while a build started:
    # asked again, it answers in full
    for attempt in range(3):
        try:
            with urllib.request.urlopen(f"{base}/{path}", timeout=60) as answer:
                return json.loads(answer.read())
        except http.client.IncompleteRead:
            if attempt == 2:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def _items(base: str, path: str) -> list[dict[str, Any]]:
    answer = _get(base, path)
    (key,) = (k for k in answer if k != "meta")
    items: list[dict[str, Any]] = answer[key]
    return items


def _log_text(base: str, logid: int) -> str:
    with urllib.request.urlopen(f"{base}/logs/{logid}/raw", timeout=60) as answer:
        return str(answer.read().decode())


def capture(base: str) -> dict[str, Any]:
    """What a REST client sees of the history: every collection, each build's properties, its
    steps, their logs, every log's lines (as /contents) and raw text."""
    seen: dict[str, Any] = {}
    for path in ("builders", "workers", "changes", "sourcestamps", "buildsets", "buildrequests"):
        seen[path] = _items(base, path)
    seen["builds"] = _items(base, "builds?property=*")
    seen["steps"] = []
    seen["logs"] = []
    seen["contents"] = {}
    seen["raw"] = {}
    for build in seen["builds"]:
        for step in _items(base, f"builds/{build['buildid']}/steps"):
            seen["steps"].append(step)
            for log in _items(base, f"steps/{step['stepid']}/logs"):
                seen["logs"].append(log)
                logid = log["logid"]
                seen["contents"][logid] = _items(base, f"logs/{logid}/contents")
                seen["raw"][logid] = _log_text(base, logid)
    return seen


@dataclass
class Moved:
    backend: str  # "sqlite" or "postgresql", then "-3.11" for Buildbot 3.11.9's moves
    root: Path
    basedir: Path
    db_url: str
    base: str  # the REST API's address, /api/v2
    before: dict[str, Any]  # Buildbot's answers
    after: dict[str, Any] = field(default_factory=dict)  # buildyard's, once it has built
    upgrade_out: str = ""
    commits_before: list[str] = field(default_factory=list)
    commit_during_move: str = ""
    nightly_served: float = 0.0
    nightly_missed: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)  # adopt.json

    @property
    def buildbot3(self) -> bool:
        return self.backend.endswith("-3.11")


def _wait(predicate: Callable[[], bool], what: str, logs: list[Path], timeout: float) -> None:
    if not wait_for(predicate, timeout=timeout, interval=0.2):
        tails = "\n".join(
            f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists()
        )
        raise AssertionError(f"timed out waiting for {what}\n{tails}")


def _run_buildbot(m: Moved, worker_port: int) -> None:
    """Buildbot's part: history with a poller's change and a Nightly firing, then stopped."""
    basedir, repo = m.basedir, m.root / "repo"
    venv = buildbot3_venv() if m.buildbot3 else buildbot_venv()
    bb = str(venv / "bin" / "buildbot")
    subprocess.run(
        [bb, "create-master", "-q", f"--db={m.db_url}", str(basedir)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (basedir / "master.cfg").write_text(CONFIG)
    (basedir / "adopt.json").write_text(json.dumps(m.settings))
    with (basedir / "buildbot.tac").open("a") as tac:
        tac.write(TAC_LOOPBACK)
    # the Nightly fires at the first minute far enough away for Buildbot to start first, and
    # at the minute after it, which passes while no master runs
    at = (int(time.time()) // 60 + 1) * 60
    if at - time.time() < NIGHTLY_MARGIN:
        at += 60
    minutes = [time.gmtime(at).tm_min, time.gmtime(at + 60).tm_min]
    (basedir / "nightly.json").write_text(json.dumps(minutes))
    twistd = basedir / "twistd.log"
    logs = [twistd]
    with (basedir / "buildbot.out").open("ab") as out:
        proc = subprocess.Popen(
            [bb, "start", "--nodaemon", str(basedir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    worker = None
    try:

        def log_has(text: str, count: int = 1) -> Callable[[], bool]:
            return lambda: (
                twistd.exists() and twistd.read_text(errors="replace").count(text) >= count
            )

        _wait(log_has("BuildMaster is running"), "Buildbot to start", logs, START_TIMEOUT)
        worker = start_worker("stock", m.root / "worker", worker_port, "w1", "pw")
        logs.append(m.root / "worker.log")
        # the poller's first poll records the branch heads (no change for them)
        _wait(
            lambda: bool(
                _query(
                    m.db_url,
                    basedir,
                    "SELECT value_json FROM object_state s JOIN objects o ON o.id = s.objectid "
                    "WHERE o.class_name = 'GitPoller' AND s.name = 'lastRev'",
                )
            ),
            "the GitPoller's first poll",
            logs,
            START_TIMEOUT,
        )
        m.commits_before.append(_commit(repo, "second"))
        _wait(
            lambda: any(b["complete"] for b in _items(m.base, "builds")),
            "the build of the polled change",
            logs,
            BUILD_TIMEOUT,
        )
        assert time.time() < at - 2, "Buildbot took too long to start for its Nightly"
        m.nightly_served, m.nightly_missed = float(at), float(at + 60)
        # its buildset too: Buildbot (3.11 seen in CI) completes it a moment after the build
        _wait(
            lambda: (
                sum(b["complete"] for b in _items(m.base, "builds")) == 2
                and all(s["complete"] for s in _items(m.base, "buildsets"))
            ),
            "the Nightly's build and buildset",
            logs,
            60 + BUILD_TIMEOUT,
        )
        assert time.time() < m.nightly_missed, "Buildbot still ran at the Nightly's second minute"
        m.before = capture(m.base)
        (m.root / "before.json").write_text(json.dumps(m.before, indent=1))
    finally:
        end_popen(proc, timeout=60)
        if worker is not None:
            end_popen(worker)


def _run_buildyard(m: Moved, worker_port: int) -> None:
    """buildyard's part: the move, and what the poller and the Nightly do after it."""
    repo = m.root / "repo"
    _repair_interrupted_poll(m)
    m.commit_during_move = _commit(repo, "third, while no master runs")
    # the Nightly's second minute passes while no master runs
    wait_for(lambda: time.time() > m.nightly_missed + 1, timeout=120, interval=0.5)
    upgraded = buildyard("upgrade-master", str(m.basedir), timeout=300)
    assert upgraded.returncode == 0, upgraded.stderr
    m.upgrade_out = upgraded.stdout
    proc = spawn_master(m.basedir)
    worker = None
    logs = [m.basedir / "out.log", m.root / "worker-after.log"]
    try:
        _wait(
            lambda: b"master_started" in (m.basedir / "out.log").read_bytes(),
            "buildyard to start",
            logs,
            START_TIMEOUT,
        )
        worker = start_worker("stock", m.root / "worker-after", worker_port, "w1", "pw")
        _wait(
            lambda: sum(b["complete"] for b in _items(m.base, "builds")) == 4,
            "the builds of the moved commit and of the missed Nightly time",
            logs,
            BUILD_TIMEOUT,
        )
        m.after = capture(m.base)
        (m.root / "after.json").write_text(json.dumps(m.after, indent=1))
        m.after["masters"] = _items(m.base, "masters")
        m.after["state"] = _query(
            m.db_url,
            m.basedir,
            "SELECT o.name, o.class_name, s.name, s.value_json FROM object_state s "
            "JOIN objects o ON o.id = s.objectid ORDER BY o.id, s.name",
        )
    finally:
        end_popen(proc, timeout=60)
        if worker is not None:
            end_popen(worker)


def _prepare(backend: str, root: Path, db_url: str) -> Moved:
    worker_port, www_port = free_port(), free_port()
    repo = root / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    first = _commit(repo, "first")
    m = Moved(backend, root, root / "master", db_url, f"http://127.0.0.1:{www_port}/api/v2", {})
    m.settings = {
        "worker_port": worker_port,
        "www_port": www_port,
        "repo": str(repo),
        "db_url": db_url,
    }
    m.commits_before.append(first)
    return m


def _move(m: Moved) -> None:
    worker_port = int(m.settings["worker_port"])
    _run_buildbot(m, worker_port)
    _run_buildyard(m, worker_port)


@pytest.fixture(scope="session")
def moves(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Moved | BaseException]:
    """The four moves, run at once: most of each is waiting for a Nightly's minutes, so the
    four together take the time of one (the tests are one xdist group, on one worker)."""
    server: PostgresServer = request.getfixturevalue("postgres_server")
    moves = {}
    for name in MOVES:
        root = tmp_path_factory.mktemp(f"adopt-{name}")
        if name.startswith("sqlite"):
            db_url = "sqlite:///state.sqlite"
        else:
            db_url = server.create_database(f"adopt_{name.replace('-', '_').replace('.', '')}")
        moves[name] = _prepare(name, root, db_url)
    outcome: dict[str, Moved | BaseException] = {}

    def run(backend: str) -> None:
        try:
            _move(moves[backend])
            outcome[backend] = moves[backend]
        except BaseException as exc:  # reported by each test of that backend
            outcome[backend] = exc

    threads = [threading.Thread(target=run, args=(b,), name=f"adopt-{b}") for b in moves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcome


MOVES = ["sqlite", "postgresql", "sqlite-3.11", "postgresql-3.11"]


@pytest.fixture(params=MOVES)
def moved(request: pytest.FixtureRequest, moves: dict[str, Moved | BaseException]) -> Moved:
    result = moves[request.param]
    if isinstance(result, BaseException):
        raise result
    return result


def test_upgrade_says_what_it_does_and_keeps_a_copy(moved: Moved) -> None:
    revision = "064" if moved.buildbot3 else "067"
    made_by = "Buildbot 3.10" if moved.buildbot3 else "Buildbot 4.3"  # 3.11 kept 3.10's schema
    assert f"made by {made_by} (schema revision '{revision}')" in moved.upgrade_out
    assert ("add what Buildbot's releases since then added" in moved.upgrade_out) == (
        moved.buildbot3
    )
    if moved.backend.startswith("sqlite"):
        copy = moved.basedir / f"state.sqlite.buildbot-{revision}.bak"
        assert f"a copy of the database as Buildbot left it: {copy}" in moved.upgrade_out
        conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        try:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
                (revision,)
            ]
            assert conn.execute("SELECT count(*) FROM builds").fetchall() == [(2,)]
        finally:
            conn.close()
    else:
        assert "back it up first (pg_dump)" in moved.upgrade_out


# Every field of every item is compared. None differs on purpose: even the live ones
# (builders' masterids, a worker's connected_to and configured_on) match, because buildyard names
# its master as Buildbot does and so keeps Buildbot's row in the masters table.
_IDS = {
    "builders": "builderid",
    "workers": "workerid",
    "changes": "changeid",
    "sourcestamps": "ssid",
    "buildsets": "bsid",
    "buildrequests": "buildrequestid",
    "builds": "buildid",
    "steps": "stepid",
    "logs": "logid",
}


# Fields of the REST answers that Buildbot added after 3.11 (4.0's rebuilt_buildid and
# locks_duration_s), which buildyard serves for the builds and buildsets 3.11 made too
ADDED_AFTER_3_11: dict[str, set[str]] = {
    "buildsets": {"rebuilt_buildid"},
    "builds": {"locks_duration_s"},
}


def _by_id(items: list[dict[str, Any]], key: str) -> dict[int, dict[str, Any]]:
    return {item[key]: item for item in items}


def test_rest_serves_the_history_as_buildbot_did(moved: Moved) -> None:
    before, after = moved.before, moved.after
    # the history is worth comparing: a poller's change, two builds with their properties,
    # a log over several chunks with stdout and stderr, a log whose last line has no newline
    assert [c["revision"] for c in before["changes"]] == moved.commits_before[1:]
    assert len(before["builds"]) == 2 and len(before["steps"]) == 6
    assert before["builds"][0]["properties"]["got"] == ["value", "SetPropertyFromCommand Step"]
    stdio = max(before["contents"].values(), key=lambda lines: len(lines[0]["content"]))
    assert "\neerr one\n" in stdio[0]["content"] and "\no2500\n" in stdio[0]["content"]
    # Buildbot 3.11's raw download leaves out the newline after a log's last line; 4.x (and
    # buildyard) end it with one: the stored text is the same, its download is 4.x's
    ends = "no newline" if moved.buildbot3 else "no newline\n"
    assert any(text.endswith(ends) for text in before["raw"].values())
    # (before.json and after.json in each move's directory keep both sides, for a failure)
    for collection, key in _IDS.items():
        theirs = _by_id(before[collection], key)
        ours = _by_id(after[collection], key)
        assert set(theirs) <= set(ours), collection
        for item_id, item in theirs.items():
            mine = ours[item_id]
            if moved.buildbot3:
                # what Buildbot 4.x added to these answers: buildyard serves it, 3.11 did not
                extra = set(mine) - set(item)
                assert extra == ADDED_AFTER_3_11.get(collection, set()), (collection, extra)
                mine = {k: v for k, v in mine.items() if k in item}
            assert mine == item, f"{collection} {item_id}"
    for logid, lines in before["contents"].items():
        assert after["contents"][logid] == lines, f"log {logid}"
        raw, ours = before["raw"][logid], after["raw"][logid]
        if moved.buildbot3:
            # 4.x's raw download (and buildyard's) starts a command's log with the build's header
            # and ends the last line: the same stored text, downloaded as 4.x does
            if raw.startswith(("sh -c", "echo value")):
                header = r"Builder: b\nBuild number: \d+\nWorker name: w1\n"
                assert re.match(header, ours), ours[:80]
                ours = ours.split("\n", 3)[3]
            if raw and not raw.endswith("\n"):
                raw += "\n"
        assert ours == raw, f"log {logid}"


def test_poller_turns_only_the_commit_made_during_the_move_into_a_change(moved: Moved) -> None:
    old = {c["changeid"] for c in moved.before["changes"]}
    new = [c for c in moved.after["changes"] if c["changeid"] not in old]
    assert [c["revision"] for c in new] == [moved.commit_during_move]
    assert new[0]["comments"] == "third, while no master runs"
    built = [
        b["properties"].get("revision", [None])[0]
        for b in moved.after["builds"]
        if b["properties"]["scheduler"][0] == "on-commit"
    ]
    assert built == [moved.commits_before[-1], moved.commit_during_move]


def test_nightly_fires_once_for_the_time_missed_during_the_move_only(moved: Moved) -> None:
    def nightly_builds(seen: dict[str, Any]) -> list[dict[str, Any]]:
        return [b for b in seen["builds"] if b["properties"]["scheduler"][0] == "nightly"]

    assert len(nightly_builds(moved.before)) == 1
    assert nightly_builds(moved.before)[0]["started_at"] >= moved.nightly_served
    # one more, for the minute that passed while no master ran; none for Buildbot's minute
    assert len(nightly_builds(moved.after)) == 2
    state = {(name, cls, key): value for name, cls, key, value in moved.after["state"]}
    nightly = {k: v for k, v in state.items() if k[0] == "nightly"}
    assert set(nightly) == {
        ("nightly", "Nightly", "last_build"),
        ("nightly", "Nightly", "last_only_if_changed"),
    }
    assert float(nightly["nightly", "Nightly", "last_build"]) >= moved.nightly_missed

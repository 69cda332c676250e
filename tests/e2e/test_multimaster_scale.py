"""Three master processes on one PostgreSQL database (``c['multiMaster'] = True``, so the
``postgres`` queue), six buildyard-worker processes, two connected to each master, and about
300 builds from a ForceScheduler (forced through the REST API of every master), a
SingleBranchScheduler (changes posted to every master's ``change_hook/base``) and a Triggerable
fired by a ``Trigger(waitForFinish=True)`` step, whose children build on any master.

Everything is checked in the database once every request is complete: each request has one
build with a final result (SUCCESS), builds of one request never overlap (no request is claimed
twice at once), each triggering build ended SUCCESS with its triggered buildsets complete, and
each scheduler is held by one master (the change-driven one made exactly one buildset per
change: had it run on several masters, a change would have been built once by each).

The second test SIGKILLs one master halfway, while it runs a child build whose parent waits on
another master: the others expire it, its unfinished builds end RETRY and are built again on
a live master, and the parents waiting on them finish.

The master killed is one that does not hold the change-driven scheduler, so that one master
holds it throughout; its failover to a live master is tested in test_multimaster_roles.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from collections import defaultdict
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from buildyard.master.db.masters import LOST_BUILD_STATE
from buildyard.master.model.results import Results
from buildyard.testing.multimaster import Cluster, Mix, all_complete, cluster, requests, submit
from buildyard.testing.postgres import PostgresServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.timeout(600),
    pytest.mark.xdist_group("multimaster-scale"),
]

# what is submitted: 120 forced "quick", 60 changes, 40 forced "parent" each triggering two
# children: 120 + 60 + 40 * 3 = 300 builds
MIX = Mix()
FORCED, CHANGES, PARENTS, TOTAL = MIX.forced, MIX.changes, MIX.parents, MIX.builds
# the whole run, polled: far more than it takes on a quiet machine
WITHIN = 400.0


def _cluster(postgres: PostgresServer, root: Path) -> AbstractAsyncContextManager[Cluster]:
    """The three masters, then the six workers (two per master), all connected."""
    return cluster(postgres, root, masters=3, worker_count=6)


async def _submit(cluster: Cluster) -> None:
    await submit(cluster, MIX)


async def _holders(db: asyncpg.Connection) -> dict[str, list[int]]:
    rows = await db.fetch(
        "SELECT s.name, sm.masterid FROM schedulers s"
        " LEFT JOIN scheduler_masters sm ON sm.schedulerid = s.id ORDER BY s.name"
    )
    out: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        out[r["name"]] += [r["masterid"]] if r["masterid"] is not None else []
    return dict(out)


async def _masterids(db: asyncpg.Connection, cluster: Cluster) -> list[int]:
    rows = {r["name"]: r["id"] for r in await db.fetch("SELECT id, name FROM masters")}
    return [
        next(mid for name, mid in rows.items() if name.endswith(str(m.basedir)))
        for m in cluster.masters
    ]


@dataclass
class Outcome:
    builds_by_request: dict[int, list[asyncpg.Record]]
    retried: list[asyncpg.Record]


async def _check(db: asyncpg.Connection, cluster: Cluster, *, killed: int | None = None) -> Outcome:
    """The assertions shared by both tests; what was retried, for the second one."""
    ids = cluster.builderids
    requests = await db.fetch(
        "SELECT id, buildsetid, builderid, complete, results FROM buildrequests"
    )
    assert all(r["complete"] == 1 for r in requests)
    assert {r["results"] for r in requests} == {int(Results.SUCCESS)}, [
        dict(r) for r in requests if r["results"] != Results.SUCCESS
    ]
    builds = await db.fetch(
        "SELECT id, buildrequestid, builderid, masterid, started_at, complete_at, results,"
        " state_string FROM builds ORDER BY id"
    )
    by_request: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for b in builds:
        by_request[b["buildrequestid"]].append(b)
    assert set(by_request) == {r["id"] for r in requests}
    retried = []
    for runs in by_request.values():
        # built exactly once: one build with a final result, the last; before it only
        # builds of the killed master, ended RETRY when it was expired
        *lost, final = runs
        assert final["results"] == Results.SUCCESS and final["complete_at"] is not None, runs
        for b in lost:
            assert (b["results"], b["state_string"], b["masterid"]) == (
                Results.RETRY,
                LOST_BUILD_STATE,
                killed,
            ), runs
        retried += lost
        # never claimed twice at once: each build starts once the one before it ended
        for before, after in itertools.pairwise(runs):
            assert after["started_at"] >= before["complete_at"], runs
    # the triggering builds: each run that reached its Trigger step made one buildset of the
    # two children, complete; each parent request's final build waited for it and succeeded
    parents = [b for b in builds if b["builderid"] == ids["parent"]]
    children = await db.fetch(
        "SELECT bs.id, bs.parent_buildid, bs.complete, bs.results,"
        " array_agg(br.builderid ORDER BY br.builderid) AS builders"
        " FROM buildsets bs JOIN buildrequests br ON br.buildsetid = bs.id"
        " WHERE bs.parent_buildid IS NOT NULL GROUP BY bs.id"
    )
    by_parent = defaultdict(list)
    for bs in children:
        assert (bs["complete"], bs["results"]) == (1, Results.SUCCESS), dict(bs)
        assert list(bs["builders"]) == sorted([ids["child-a"], ids["child-b"]])
        by_parent[bs["parent_buildid"]].append(bs["id"])
    assert all(len(v) == 1 for v in by_parent.values()), by_parent
    assert set(by_parent) <= {b["id"] for b in parents}
    finals = [b for b in parents if b["results"] == Results.SUCCESS]
    assert len(finals) == PARENTS
    assert {b["id"] for b in finals} <= set(by_parent)
    triggers = await db.fetch(
        "SELECT buildid, results FROM steps WHERE name = 'trigger' AND buildid = ANY($1)",
        [b["id"] for b in finals],
    )
    assert sorted((s["buildid"], s["results"]) for s in triggers) == sorted(
        (b["id"], int(Results.SUCCESS)) for b in finals
    )
    # the schedulers: each held by one master; the change-driven one made one buildset per
    # change (once per change, not once per master that saw it)
    holders = await _holders(db)
    assert all(len(holders[name]) == 1 for name in ("force", "changes", "trig")), holders
    made = await db.fetch(
        "SELECT property_value, count(*) AS n FROM buildset_properties"
        " WHERE property_name = 'scheduler' GROUP BY property_value"
    )
    per_scheduler = {json.loads(r["property_value"])[0]: int(r["n"]) for r in made}
    assert per_scheduler == {
        "force": FORCED + PARENTS,
        "changes": CHANGES,
        "trig": len(children),
    }, per_scheduler
    # the work was spread: every master ran builds
    assert {b["masterid"] for b in builds} >= set(await _masterids(db, cluster)) - {killed}
    return Outcome(by_request, retried)


async def test_300_builds_on_three_masters_each_built_once(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    async with _cluster(postgres_server, tmp_path) as cluster:
        db = await asyncpg.connect(cluster.db_url)
        try:
            started = time.monotonic()
            await _submit(cluster)
            await all_complete(db, TOTAL, started + WITHIN)
            took = time.monotonic() - started
            outcome = await _check(db, cluster)
            assert not outcome.retried
            assert len(outcome.builds_by_request) == TOTAL
            print(f"{TOTAL} builds on three masters: {took:.1f} s")
        finally:
            await db.close()


# a build running on master ``mid`` whose request a triggering build on another master waits
# for
RUNNING_CHILD = """
SELECT b.id FROM builds b
JOIN buildrequests br ON br.id = b.buildrequestid
JOIN buildsets bs ON bs.id = br.buildsetid
JOIN builds p ON p.id = bs.parent_buildid
WHERE b.complete_at IS NULL AND b.masterid = $1 AND p.complete_at IS NULL AND p.masterid <> $1
LIMIT 1
"""


async def test_a_master_sigkilled_halfway_its_builds_rerun_and_triggers_finish(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    async with _cluster(postgres_server, tmp_path) as cluster:
        db = await asyncpg.connect(cluster.db_url)
        try:
            started = time.monotonic()
            await _submit(cluster)
            deadline = started + WITHIN
            masterids = await _masterids(db, cluster)
            [changes_holder] = (await _holders(db))["changes"]
            # candidates: the masters not holding the change-driven scheduler
            candidates = [(i, mid) for i, mid in enumerate(masterids) if mid != changes_holder]
            # halfway, then the first moment a candidate runs a child some other master's
            # parent waits for
            victim: tuple[int, int] | None = None
            while victim is None and time.monotonic() < deadline:
                _n, done = await requests(db)
                if done >= TOTAL // 2:
                    for i, mid in candidates:
                        if await db.fetchval(RUNNING_CHILD, mid) is not None:
                            victim = (i, mid)
                            break
                if victim is None:
                    await asyncio.sleep(0.05)
            assert victim is not None, "no child build of a waiting parent ran on a candidate"
            index, killed = victim
            proc = cluster.masters[index].proc
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            await all_complete(db, TOTAL, deadline)
            took = time.monotonic() - started
            outcome = await _check(db, cluster, killed=killed)
            # what the killed master was running was built again elsewhere: at least the
            # child a parent on a live master was waiting for
            assert outcome.retried
            retried_children = await db.fetchval(
                "SELECT count(*) FROM builds b JOIN buildrequests br ON br.id = b.buildrequestid"
                " JOIN buildsets bs ON bs.id = br.buildsetid"
                " JOIN builds p ON p.id = bs.parent_buildid"
                " WHERE b.results = $1 AND b.masterid = $2 AND p.masterid <> $2",
                int(Results.RETRY),
                killed,
            )
            assert retried_children >= 1
            for b in outcome.retried:
                final = outcome.builds_by_request[b["buildrequestid"]][-1]
                assert final["masterid"] != killed
            survivors = [m for i, m in enumerate(cluster.masters) if i != index]
            assert any("master_expired" in m.log() for m in survivors)
            assert all(m.proc.poll() is None for m in survivors)
            print(
                f"{len(outcome.builds_by_request)} requests, master {index} SIGKILLed,"
                f" {len(outcome.retried)} builds rerun: {took:.1f} s"
            )
        finally:
            await db.close()

"""Masters through the write path: check-in, stop, expiry, cleanup, and the events of each."""

from __future__ import annotations

import sqlalchemy as sa

from buildyard.master.data.updates import Updates
from buildyard.master.db import schema as t
from buildyard.master.db.base import inserted_id
from buildyard.master.db.connector import Database
from buildyard.master.db.hashes import name_hash
from buildyard.master.model.results import Results
from buildyard.master.mq.local import LocalMQ, LocalSubscription
from buildyard.testing.clock import FakeClock


def drain(sub: LocalSubscription) -> list[tuple[tuple[str, ...], dict[str, object]]]:
    out = []
    while sub.pending:
        key, body = sub._queue.get_nowait()
        out.append((key, dict(body)))
    return out


async def test_master_active_announces_only_a_change(updates: Updates, mq: LocalMQ) -> None:
    sub = mq.subscribe(("masters", None, None))
    mid = await updates.find_master_id("m1")
    await updates.master_active(name="m1", masterid=mid)
    await updates.master_active(name="m1", masterid=mid)
    assert drain(sub) == [
        (("masters", str(mid), "started"), {"masterid": mid, "name": "m1", "active": True})
    ]


async def _busy_master(database: Database, masterid: int) -> dict[str, int]:
    """A master holding a builder, a claimed running build with a step and a log."""
    async with database.transaction() as c:
        bid = inserted_id(
            await c.execute(t.builders.insert().values(name="b", name_hash=name_hash("b")))
        )
        await c.execute(t.builder_masters.insert().values(builderid=bid, masterid=masterid))
        bsid = inserted_id(await c.execute(t.buildsets.insert().values(submitted_at=1, reason="r")))
        brid = inserted_id(
            await c.execute(
                t.buildrequests.insert().values(buildsetid=bsid, builderid=bid, submitted_at=1)
            )
        )
        done = inserted_id(
            await c.execute(
                t.buildrequests.insert().values(
                    buildsetid=bsid, builderid=bid, submitted_at=1, complete=1, results=0
                )
            )
        )
        for r in (brid, done):
            await c.execute(
                t.buildrequest_claims.insert().values(brid=r, masterid=masterid, claimed_at=1)
            )
        buildid = inserted_id(
            await c.execute(
                t.builds.insert().values(
                    number=1,
                    builderid=bid,
                    buildrequestid=brid,
                    masterid=masterid,
                    started_at=1,
                    locks_duration_s=0,
                    state_string="building",
                )
            )
        )
        stepid = inserted_id(
            await c.execute(
                t.steps.insert().values(
                    number=0, name="shell", buildid=buildid, state_string="", urls_json="[]"
                )
            )
        )
        logid = inserted_id(
            await c.execute(
                t.logs.insert().values(
                    name="stdio", slug="stdio", stepid=stepid, complete=0, num_lines=0, type="s"
                )
            )
        )
    return {
        "builderid": bid,
        "bsid": bsid,
        "brid": brid,
        "done": done,
        "buildid": buildid,
        "stepid": stepid,
        "logid": logid,
    }


async def test_expiry_marks_silent_master_inactive_and_undoes_what_it_held(
    updates: Updates, database: Database, mq: LocalMQ, clock: FakeClock
) -> None:
    dead = await updates.find_master_id("dead")
    live = await updates.find_master_id("live")
    await updates.master_active(name="dead", masterid=dead)
    ids = await _busy_master(database, dead)
    w_dead = await updates.find_worker_id("w-dead")
    w_live = await updates.find_worker_id("w-live")
    await updates.worker_connected(workerid=w_dead, masterid=dead, workerinfo={})
    await updates.worker_connected(workerid=w_live, masterid=live, workerinfo={})
    clock.advance(100)
    await updates.master_active(name="live", masterid=live)
    sub = mq.subscribe((None,) * 3, (None,) * 5, (None,) * 7)

    assert await updates.expire_masters(expire_after=200) == []  # not silent long enough
    clock.advance(150)
    assert await updates.expire_masters(expire_after=200) == [dead]

    m = await database.masters.get_master(dead)
    assert m is not None and not m.active
    alive = await database.masters.get_master(live)
    assert alive is not None and alive.active
    async with database.reading() as c:
        assert (
            await c.execute(sa.select(sa.func.count()).select_from(t.builder_masters))
        ).scalar() == 0
        claims = (await c.execute(sa.select(t.buildrequest_claims.c.brid))).scalars().all()
        build = (await c.execute(sa.select(t.builds).where(t.builds.c.id == ids["buildid"]))).one()
        step = (await c.execute(sa.select(t.steps).where(t.steps.c.id == ids["stepid"]))).one()
        log = (await c.execute(sa.select(t.logs).where(t.logs.c.id == ids["logid"]))).one()
    # the incomplete request is free again; the completed one keeps its claim
    assert claims == [ids["done"]]
    assert (build.results, build.complete_at) == (Results.RETRY, int(clock.now()))
    assert build.state_string == "retry (master lost)"  # no longer "building"
    assert step.results == Results.RETRY and step.complete_at == int(clock.now())
    assert log.complete == 1
    # the dead master's workers are no longer connected anywhere; the live one's stay
    dead_worker = await database.workers.get_worker(w_dead)
    live_worker = await database.workers.get_worker(w_live)
    assert dead_worker is not None and list(dead_worker.connected_to) == []
    assert live_worker is not None and list(live_worker.connected_to) == [live]

    events = drain(sub)
    keys = [k for k, _ in events]
    # the whole resource under every key, as when a live master ends them
    finished = dict(events)[("builds", str(ids["buildid"]), "finished")]
    assert finished["state_string"] == "retry (master lost)"
    assert (finished["started_at"], finished["complete"], finished["results"]) == (
        1,
        True,
        Results.RETRY,
    )
    number = finished["number"]
    assert dict(events)[("builders", str(ids["builderid"]), "builds", str(number), "finished")] == (
        finished
    )
    step_event = dict(events)[
        ("builds", str(ids["buildid"]), "steps", str(ids["stepid"]), "finished")
    ]
    assert (step_event["name"], step_event["results"], step_event["complete"]) == (
        "shell",
        Results.RETRY,
        True,
    )
    assert ("steps", str(ids["stepid"]), "logs", "stdio", "finished") in keys
    request = dict(events)[("buildrequests", str(ids["brid"]), "unclaimed")]
    assert (request["claimed"], request["buildsetid"]) == (False, ids["bsid"])
    disconnected = dict(events)[("workers", str(w_dead), "disconnected")]
    assert disconnected["connected_to"] == []
    assert ("builders", str(ids["builderid"]), "stopped") in keys
    assert ("logs", str(ids["logid"]), "finished") in keys
    assert ("steps", str(ids["stepid"]), "finished") in keys
    assert ("builds", str(ids["buildid"]), "finished") in keys
    assert ("buildrequests", str(ids["brid"]), "unclaimed") in keys
    assert keys[-1] == ("masters", str(dead), "stopped")
    # a second pass finds nothing new to announce
    assert await updates.expire_masters(expire_after=200) == []
    assert drain(sub) == []


async def test_forced_housekeeping_cleans_an_inactive_master_silently(
    updates: Updates, database: Database, mq: LocalMQ, clock: FakeClock
) -> None:
    dead = await updates.find_master_id("dead")
    ids = await _busy_master(database, dead)  # left behind although marked inactive
    clock.advance(1000)
    sub = mq.subscribe(("masters", None, None))
    assert await updates.expire_masters(expire_after=10, force_housekeeping=True) == []
    async with database.reading() as c:
        claims = (await c.execute(sa.select(t.buildrequest_claims.c.brid))).scalars().all()
    assert claims == [ids["done"]]
    assert drain(sub) == []  # housekeeping alone announces no stop


async def test_master_stopped_cleans_up_after_its_own_previous_run(
    updates: Updates, database: Database, mq: LocalMQ
) -> None:
    mid = await updates.find_master_id("m")
    await updates.master_active(name="m", masterid=mid)
    ids = await _busy_master(database, mid)
    sub = mq.subscribe(("masters", None, None))
    await updates.master_stopped(name="m", masterid=mid)
    async with database.reading() as c:
        claims = (await c.execute(sa.select(t.buildrequest_claims.c.brid))).scalars().all()
    assert claims == [ids["done"]]
    assert [k for k, _ in drain(sub)] == [("masters", str(mid), "stopped")]


async def test_worker_events_carry_the_whole_worker(
    updates: Updates, database: Database, mq: LocalMQ
) -> None:
    mid = await updates.find_master_id("m")
    wid = await updates.find_worker_id("w1")
    sub = mq.subscribe(("workers", None, None))
    await updates.worker_connected(workerid=wid, masterid=mid, workerinfo={"version": "4.3.0"})
    await updates.set_worker_state(workerid=wid, paused=True, graceful=False, pause_reason="disk")
    await updates.worker_disconnected(workerid=wid, masterid=mid)
    events = drain(sub)
    assert [k for k, _ in events] == [
        ("workers", str(wid), "connected"),
        ("workers", str(wid), "state_updated"),
        ("workers", str(wid), "disconnected"),
    ]
    connected, paused, gone = (body for _, body in events)
    assert connected["connected_to"] == [{"masterid": mid}]
    assert connected["workerinfo"] == {"version": "4.3.0"}
    assert (paused["paused"], paused["pause_reason"], paused["graceful"]) == (True, "disk", False)
    assert gone["connected_to"] == []


async def test_expiry_finishes_what_a_master_died_in_the_middle_of(
    updates: Updates, database: Database, mq: LocalMQ, clock: FakeClock
) -> None:
    """A master killed between a build's end and its request's completion, or between the
    last request's completion and its buildset's: the request is completed with the build's
    result (not built again), the buildset completed (a Trigger waiting on it finishes). A
    request whose last build ended RETRY is given back as before."""
    dead = await updates.find_master_id("dead")
    await updates.master_active(name="dead", masterid=dead)
    async with database.transaction() as c:
        bid = inserted_id(
            await c.execute(t.builders.insert().values(name="b", name_hash=name_hash("b")))
        )

        async def request(*, complete: bool, build: Results | None) -> tuple[int, int]:
            bsid = inserted_id(
                await c.execute(t.buildsets.insert().values(submitted_at=1, reason="r"))
            )
            done = {"complete": 1, "results": 0, "complete_at": 3} if complete else {}
            brid = inserted_id(
                await c.execute(
                    t.buildrequests.insert().values(
                        buildsetid=bsid, builderid=bid, submitted_at=1, **done
                    )
                )
            )
            await c.execute(
                t.buildrequest_claims.insert().values(brid=brid, masterid=dead, claimed_at=1)
            )
            if build is not None:
                await c.execute(
                    t.builds.insert().values(
                        number=brid,
                        builderid=bid,
                        buildrequestid=brid,
                        masterid=dead,
                        started_at=1,
                        complete_at=2,
                        results=int(build),
                        locks_duration_s=0,
                        state_string="finished",
                    )
                )
            return bsid, brid

        built = await request(complete=False, build=Results.WARNINGS)
        completed = await request(complete=True, build=Results.SUCCESS)
        retried = await request(complete=False, build=Results.RETRY)
    clock.advance(1000)
    sub = mq.subscribe((None,) * 3)
    assert await updates.expire_masters(expire_after=10) == [dead]
    async with database.reading() as c:
        requests = {
            r.id: (r.complete, r.results) for r in await c.execute(sa.select(t.buildrequests))
        }
        buildsets = {r.id: (r.complete, r.results) for r in await c.execute(sa.select(t.buildsets))}
        claims = sorted((await c.execute(sa.select(t.buildrequest_claims.c.brid))).scalars())
    assert requests == {
        built[1]: (1, Results.WARNINGS),
        completed[1]: (1, Results.SUCCESS),
        retried[1]: (0, None),
    }
    assert buildsets == {
        built[0]: (1, Results.WARNINGS),
        completed[0]: (1, Results.SUCCESS),
        retried[0]: (0, None),
    }
    assert claims == [built[1], completed[1]]
    events = dict(drain(sub))
    assert events[("buildrequests", str(built[1]), "complete")]["results"] == Results.WARNINGS
    assert events[("buildsets", str(built[0]), "complete")]["results"] == Results.WARNINGS
    assert events[("buildsets", str(completed[0]), "complete")]["results"] == Results.SUCCESS
    assert events[("buildrequests", str(retried[1]), "unclaimed")]["claimed"] is False
    assert ("buildsets", str(retried[0]), "complete") not in events

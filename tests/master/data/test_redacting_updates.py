"""The write path hides secret values in what it stores and announces: changes, buildsets,
build and step texts, URLs, log names, properties, build data, worker info (real database,
both backends)."""

from __future__ import annotations

import json

from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.model.logs import LogType
from buildyard.master.model.results import Results
from buildyard.master.mq.local import LocalMQ
from tests.master.data.test_masters_updates import drain

TOKEN = "Q7K2W9MR4PL8VN3TB6HJ"


async def test_every_text_a_build_writes_is_stored_and_announced_redacted(
    updates: Updates, mq: LocalMQ, database: Database
) -> None:
    updates.redactor.add(TOKEN, "tok")
    events = mq.subscribe((None,) * 3, (None,) * 4, (None,) * 5)
    changeid = await updates.add_change(
        author="a",
        comments=f"pushed with {TOKEN}",
        repository=f"https://x:{TOKEN}@example.org/r.git",
        properties={"p": (TOKEN, "Change")},
    )
    builderid = await updates.find_builder_id("b")
    masterid = await updates.find_master_id("m")
    ids = await updates.add_buildset(
        scheduler="s",
        sourcestamps=[
            {"repository": "", "branch": None, "revision": None, "codebase": "", "project": ""}
        ],
        reason=f"because {TOKEN}",
        properties={"trigger": ({"k": [TOKEN]}, f"Trigger {TOKEN}")},
        builderids=[builderid],
    )
    buildid, _number = await updates.add_build(
        builderid=builderid, buildrequestid=ids.brids[builderid], workerid=None, masterid=masterid
    )
    await updates.set_build_state_string(buildid, f"building {TOKEN}")
    await updates.set_build_properties(buildid, {"out": (TOKEN + "\n", "Step")})
    stepid, _n, name = await updates.add_step(buildid, f"step {TOKEN}", start=True)
    assert name == "step <tok>"
    await updates.set_step_state_string(stepid, f"running {TOKEN}")
    await updates.add_step_url(stepid, f"link {TOKEN}", f"https://u:{TOKEN}@h/")
    logid = await updates.add_log(stepid, f"log {TOKEN}", LogType.TEXT)
    await updates.set_build_data(buildid, "blob", f"data {TOKEN}".encode(), "Step")
    await updates.set_build_data(buildid, "binary", b"\xff" + TOKEN.encode(), "Step")
    await updates.finish_step(stepid, Results.SUCCESS, state_string=f"done {TOKEN}")
    await updates.finish_build(buildid, Results.SUCCESS, state_string=f"ok {TOKEN}")

    change = await database.changes.get_change(changeid)
    assert change is not None
    assert change.comments == "pushed with <tok>"
    assert change.properties == {"p": ("<tok>", "Change")}
    assert await database.buildsets.get_buildset_properties(ids.bsid) == {
        "trigger": ({"k": ["<tok>"]}, "Trigger <tok>")
    }
    build = await database.builds.get_build(buildid)
    assert build is not None and build.state_string == "ok <tok>"
    assert await database.builds.get_build_properties(buildid) == {"out": ("<tok>\n", "Step")}
    [step] = await database.steps.get_steps(buildid)
    assert (step.name, step.state_string) == ("step <tok>", "done <tok>")
    assert [(u.name, u.url) for u in step.urls] == [("link <tok>", "https://u:<tok>@h/")]
    log = await database.logs.get_log(logid)
    assert log is not None and log.name == "log <tok>"
    blob = await database.builds.get_build_data(buildid, "blob")
    assert blob is not None and blob.value == b"data <tok>"
    binary = await database.builds.get_build_data(buildid, "binary")
    assert binary is not None and binary.value == b"\xff" + TOKEN.encode()  # not text: kept

    workerid = await updates.find_worker_id("w1")
    await updates.worker_connected(
        workerid=workerid, masterid=masterid, workerinfo={"admin": f"ops {TOKEN}", "host": "h"}
    )
    worker = await database.workers.get_worker(workerid)
    assert worker is not None and worker.workerinfo == {"admin": "ops <tok>", "host": "h"}

    announced = drain(events)
    assert len(announced) > 10
    assert TOKEN not in json.dumps(announced, default=str)

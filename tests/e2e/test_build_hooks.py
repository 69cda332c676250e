"""master.cfg's callables around distribution (nextBuild, nextWorker, canStartBuild,
prioritizeBuilders, collapseRequests, do_build_if) and secrets in real builds."""

from __future__ import annotations

import asyncio
from pathlib import Path

from buildyard.master.master import BuildMaster
from buildyard.master.model.results import Results
from buildyard.testing.masters import running_master
from buildyard.testing.processes import eventually

BODY = """
c['secretsProviders'] = [secrets.SecretInAFile({secrets!r})]
# one build at a time, so the order of build numbers is the order builds were chosen in
c['workers'] = [worker.Worker("w1", "pw", max_builds=1)]

def echo(name, text):
    return util.BuildFactory([steps.ShellCommand(name=name, command=["echo", text])])

def newest_first(builder, requests):
    return max(requests, key=lambda r: r.submittedAt.timestamp() * 1e6 + r.id)

def all_together(master, builder, a, b):
    return True

c['builders'] = [
    util.BuilderConfig(name="secret", workernames=["w1"], factory=echo(
        "show",
        util.Interpolate("token=%(secret:token)s branch=%(src::branch)s os=%(worker:system)s"),
    )),
    util.BuilderConfig(name="skipme", workernames=["w1"], factory=echo("never", "x"),
                       do_build_if=lambda build: build.getProperty("run") == "yes"),
    util.BuilderConfig(name="newest", workernames=["w1"], factory=echo("n", "n"),
                       nextBuild=newest_first, collapseRequests=False),
    util.BuilderConfig(name="picky", workernames=["w1"], factory=echo("p", "p"),
                       canStartBuild=lambda builder, wfb, req: req.priority != 13),
    util.BuilderConfig(name="chosen", workernames=["w1"], factory=echo("c", "c"),
                       nextWorker=lambda builder, workers, req: [
                           w for w in workers if w.worker.workername == "w1"][0]),
    util.BuilderConfig(name="nobody", workernames=["w1"], factory=echo("x", "x"),
                       nextWorker=lambda builder, workers, req: None),
    util.BuilderConfig(name="merged", workernames=["w1"], factory=echo("m", "m"),
                       collapseRequests=all_together),
]
"""


async def _add(
    m: BuildMaster, builder: str, *, revision: str = "r", priority: int = 0, **props: str
) -> int:
    builderid = await m.data.updates.find_builder_id(builder)
    _bsid, brids = await m.data.updates.add_buildset(
        scheduler="test",
        sourcestamps=[
            {
                "branch": "main",
                "revision": revision,
                "repository": "",
                "project": "",
                "codebase": "",
            }
        ],
        reason="test",
        properties={k: (v, "Test") for k, v in props.items()},
        builderids=[builderid],
        priority=priority,
    )
    return brids[builderid]


async def _done(m: BuildMaster, *brids: int) -> None:
    async def all_done() -> bool:
        for brid in brids:
            r = await m.db.buildrequests.get_buildrequest(brid)
            if r is None or not r.complete:
                return False
        return True

    await eventually(all_done, within=60)


async def test_distribution_callables_and_secrets(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "token").write_text("s3cr3t-value\n")
    (secrets / "token").chmod(0o600)
    async with running_master(tmp_path, BODY.format(secrets=str(secrets))) as running:
        m = running.master
        db = m.db

        # secret:, src: and worker: selectors; the secret's value never reaches the log
        shown = await running.build(
            "secret",
            sourcestamps=[
                {"branch": "dev", "revision": None, "repository": "", "project": "", "codebase": ""}
            ],
        )
        assert shown.build.results == Results.SUCCESS
        assert shown.stdout("show") == "token=<token> branch=dev os=posix\n"
        assert "s3cr3t" not in "".join(shown.logs.values())

        # do_build_if: a build that should not run is SKIPPED, without steps
        skipped = await running.build("skipme", properties={"run": "no"})
        assert skipped.build.results == Results.SKIPPED
        assert skipped.steps == []
        ran = await running.build("skipme", properties={"run": "yes"})
        assert ran.build.results == Results.SUCCESS

        # nextBuild: waiting requests are taken newest first; collapseRequests: a callable
        # that says yes to everything merges different source stamps too
        workerid = await m.data.updates.find_worker_id("w1")
        await m.data.updates.set_worker_state(workerid=workerid, paused=True, graceful=False)
        newest = [await _add(m, "newest", revision=f"r{i}") for i in range(3)]
        merged = [await _add(m, "merged", revision=f"m{i}") for i in range(3)]
        blocked = await _add(m, "picky", priority=13)
        allowed = await _add(m, "picky", priority=1)
        chosen = await _add(m, "chosen")
        nobody = await _add(m, "nobody")
        await asyncio.sleep(0.5)
        await m.data.updates.set_worker_state(workerid=workerid, paused=False, graceful=False)
        await _done(m, *newest, *merged, allowed, chosen)

        numbers = [(await db.builds.get_builds(buildrequestid=b))[0].number for b in newest]
        assert numbers == sorted(numbers, reverse=True)
        # one build ran the three requests, and each request has its result
        merged_id = await m.data.updates.find_builder_id("merged")
        assert len(await db.builds.get_builds(builderid=merged_id)) == 1
        for brid in merged:
            request = await db.buildrequests.get_buildrequest(brid)
            assert request is not None
            assert request.results == Results.SUCCESS
        [chosen_build] = await db.builds.get_builds(buildrequestid=chosen)
        assert chosen_build.results == Results.SUCCESS

        # canStartBuild said no to priority 13, nextWorker said nobody: both still wait
        await asyncio.sleep(0.5)
        assert await db.builds.get_builds(buildrequestid=blocked) == []
        assert await db.builds.get_builds(buildrequestid=nobody) == []
        for brid in (blocked, nobody):
            assert await m.botmaster.brd.cancel_buildrequest(brid, "done testing")


SELECT_BODY = """
def pick(builder, workers, request):
    with open({mark!r}, "a") as out:
        out.write(builder.name + " " + ",".join(w.worker.workername for w in workers) + "\\n")
    return workers[0]

c['select_next_worker'] = pick
c['builders'] = [
    util.BuilderConfig(name="plain", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="e", command=["echo", "x"]),
    ])),
]
"""


async def test_select_next_worker_chooses_for_builders_without_next_worker(
    tmp_path: Path,
) -> None:
    mark = tmp_path / "chosen"
    async with running_master(tmp_path, SELECT_BODY.format(mark=str(mark))) as running:
        done = await running.build("plain")
        assert done.build.results == Results.SUCCESS
    # c['select_next_worker'] was asked once, with the builder and its idle worker
    assert mark.read_text() == "plain w1\n"

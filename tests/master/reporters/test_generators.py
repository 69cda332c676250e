"""The report generators' filters and reports, on a real master with a real worker: a
reporter in master.cfg collects what each generator produces."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.testing.masters import Running, running_master

COLLECT = """
from buildbot.reporters.base import ReporterBase

class Collect(ReporterBase):
    reports = {}

    def sendMessage(self, reports):
        self.reports.setdefault(self.name, []).extend(reports)

def collect(name, *generators):
    return Collect(name=name, generators=list(generators))

ok = util.BuildFactory([steps.ShellCommand(command=['true'])])
bad = util.BuildFactory([steps.ShellCommand(name='fail', command=['sh', '-c', 'echo boom; false'])])
c['builders'] = [
    util.BuilderConfig(name='ok', workernames=['w1'], factory=ok),
    util.BuilderConfig(name='bad', workernames=['w1'], factory=bad),
    util.BuilderConfig(name='flip', workernames=['w1'], factory=util.BuildFactory([
        steps.ShellCommand(command=['sh', '-c', util.Interpolate('exit %(prop:code)s')])])),
]
"""


async def _reports(run: Running, name: str, count: int) -> list[dict[str, Any]]:
    """The reports of reporter ``name`` once it has ``count`` (bounded wait)."""
    service: Any = run.master.service_manager.named(name)
    try:
        async with asyncio.timeout(60):
            while len(service.reports.get(name, [])) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(
            f"{name}: {len(service.reports.get(name, []))} reports, not {count}; all: "
            + repr(
                {
                    k: [r["builds"][0]["buildid"] if r["builds"] else None for r in v]
                    for k, v in service.reports.items()
                }
            )
        ) from None
    await run.master.mq.wait_idle()
    return list(service.reports.get(name, []))


async def test_modes_and_filters(tmp_path: Path) -> None:
    services = """
c['services'] = [
    collect('all', reporters.BuildStatusGenerator(mode='all',
        message_formatter=reporters.MessageFormatterFunction(
            lambda ctx: ctx['build']['builder']['name'], 'plain'))),
    collect('failing', reporters.BuildStatusGenerator(mode=('failing',))),
    collect('change', reporters.BuildStatusGenerator(mode=('change',), builders=['flip'])),
    collect('problem', reporters.BuildStatusGenerator(mode='problem', builders=['flip'])),
    collect('red', reporters.BuildStatusGenerator(mode='all', builders=['bad'])),
    collect('only_main', reporters.BuildStatusGenerator(mode='all', branches=['main'])),
    collect('forced', reporters.BuildStatusGenerator(mode='all', schedulers=['force'])),
]
"""
    async with running_master(tmp_path, COLLECT + services) as run:
        ok = await run.build("ok")
        bad = await run.build("bad")
        flips = [await run.build("flip", properties={"code": code}) for code in (0, 1, 1, 0)]
        assert [f.build.results for f in flips] == [
            Results.SUCCESS,
            Results.FAILURE,
            Results.FAILURE,
            Results.SUCCESS,
        ]
        every = await _reports(run, "all", 6)
        failing = await _reports(run, "failing", 3)
        change = await _reports(run, "change", 2)
        problem = await _reports(run, "problem", 1)
        red = await _reports(run, "red", 1)
        others: Any = run.master.service_manager.named("only_main")
    assert [r["body"] for r in every] == ["ok", "bad", "flip", "flip", "flip", "flip"]
    assert [r["type"] for r in every] == ["plain"] * 6
    assert every[0]["builds"][0]["buildid"] == ok.build.id
    assert [r["builds"][0]["buildid"] for r in failing] == [
        bad.build.id,
        flips[1].build.id,
        flips[2].build.id,
    ]
    # change: the result differs from the previous build's (not the first build: no previous)
    assert [r["builds"][0]["buildid"] for r in change] == [flips[1].build.id, flips[3].build.id]
    assert change[0]["builds"][0]["prev_build"]["buildid"] == flips[0].build.id
    # problem: a failure after a non-failure, once
    assert [r["builds"][0]["buildid"] for r in problem] == [flips[1].build.id]
    assert [r["builds"][0]["buildid"] for r in red] == [bad.build.id]
    assert red[0]["subject"] == "Buildbot: bad failure (unknown revision)"
    # no build was on branch main, and none came from a scheduler named force
    assert others.reports.get("only_main") is None
    assert others.reports.get("forced") is None


async def test_formatter_details_and_buildset_generators(tmp_path: Path) -> None:
    services = """
c['services'] = [
    collect('details', reporters.BuildStatusGenerator(mode='failing',
        message_formatter=reporters.MessageFormatter(
            template="{{ status_detected }}|{{ summary }}|{{ workername }}|{{ projects }}|"
                     "{% for s in build['steps'] %}{{ s['name'] }}={{ result_names[s['results']] }}"
                     "{% for l in s['logs'] %}[{{ l['name'] }}:{{ l['content']['content'] }}]"
                     "{% endfor %}{% endfor %}|{{ sourcestamps }}",
            want_logs_content=True))),
    collect('buildset', reporters.BuildSetStatusGenerator(mode='all',
        message_formatter=reporters.MessageFormatter(template='{{ buildername }};'))),
    collect('combined', reporters.BuildSetCombinedStatusGenerator(
        message_formatter=reporters.MessageFormatterFunction(
            lambda ctx: [b['builder']['name'] for b in ctx['builds']], 'json'))),
    collect('requests', reporters.BuildRequestGenerator(builders=['bad'])),
    collect('missing', reporters.WorkerMissingGenerator(workers=['w1'])),
    collect('start_end', reporters.BuildStartEndStatusGenerator(builders=['ok'],
        start_formatter=reporters.MessageFormatterRenderable(
            util.Interpolate('go %(prop:buildername)s')),
        end_formatter=reporters.MessageFormatterEmpty())),
]
"""
    stamp: SourceStampSpec = {
        "branch": "dev",
        "revision": "abc123",
        "repository": "https://example.org/r.git",
        "project": "proj",
        "codebase": "",
    }
    async with running_master(tmp_path, COLLECT + services) as run:
        updates = run.master.data.updates
        ids = [await updates.find_builder_id(n) for n in ("ok", "bad")]
        bsid, _brids = await updates.add_buildset(
            scheduler="test",
            sourcestamps=[stamp],
            reason="both",
            properties={},
            builderids=ids,
        )
        [details] = await _reports(run, "details", 1)
        [buildset] = await _reports(run, "buildset", 1)
        [combined] = await _reports(run, "combined", 1)
        [request] = await _reports(run, "requests", 1)
        start_end = await _reports(run, "start_end", 2)
        workerid = (await run.master.db.workers.get_workers())[0].id
        await updates.worker_missing(
            workerid=workerid, last_connection="yesterday", notify=["ops@example.org"]
        )
        [missing] = await _reports(run, "missing", 1)
    status, summary, worker, projects, steps, stamps = details["body"].split("|")
    assert (status, worker, projects) == ("failed build", "w1", "proj"), details["body"]
    assert summary.startswith("BUILD FAILED: ")  # and the build's state string
    assert "fail=failure[stdio:" in steps and "boom" in steps
    assert stamps == "Build Source Stamp: [branch dev] abc123\n"
    assert [lg["name"] for lg in details["logs"]] == ["stdio"]
    assert buildset["buildset"]["bsid"] == bsid
    assert sorted(buildset["body"].split(";")[:2]) == ["bad", "ok"]
    assert buildset["results"] == Results.FAILURE
    assert sorted(combined["body"]) == ["bad", "ok"]
    assert combined["type"] == "json"
    assert request["body"] == "Build pending."
    assert request["builds"][0]["complete"] is False
    assert request["builds"][0]["properties"]["buildername"] == ["bad", "Builder"]
    assert [r["body"] for r in start_end] == ["go ok", None]
    assert missing["users"] == ["ops@example.org"]
    assert missing["worker"] == "w1"
    assert "w1" in missing["subject"] and "yesterday" in missing["body"]

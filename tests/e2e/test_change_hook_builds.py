"""A webhook starts builds: a GitHub push posted to /change_hook/github becomes changes, a
scheduler's build requests, and builds on a real worker that see the change's properties."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from buildyard.master.model.results import Results
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import eventually
from tests.master.changes.hooks import payloads as p

pytestmark = pytest.mark.e2e

BODY = """
c['builders'] = [util.BuilderConfig(name="hooked", workernames=["w1"], factory=util.BuildFactory([
    steps.ShellCommand(name="show", command=["echo", util.Interpolate(
        "event=%(prop:event)s distinct=%(prop:github_distinct)s branch=%(src::branch)s "
        "revision=%(src::revision)s topics=%(prop:github.repository.topics)s")]),
]))]
c['schedulers'] = [schedulers.AnyBranchScheduler(
    name="on-push", builderNames=["hooked"],
    change_filter=util.ChangeFilter(repository="https://github.com/harbor/lighthouse"))]
c['www'] = {{
    'port': 'tcp:{port}:interface=127.0.0.1',
    'change_hook_dialects': {{'github': {{
        'secret': 'build-secret',
        'github_property_whitelist': ['github.repository.topics'],
    }}}},
}}
"""


async def test_a_github_push_builds_with_the_changes_properties(tmp_path: Path) -> None:
    port = free_port()
    async with running_master(tmp_path, BODY.format(port=port)) as running:
        payload = p.body(p.gh_push("refs/heads/fog", [p.gh_commit(5, "Fog lamp")]))
        headers = {
            "X-GitHub-Event": "push",
            "Content-Type": "application/json",
            "X-Hub-Signature-256": p.sign(payload, "build-secret"),
        }
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}/change_hook/github", data=payload, headers=headers
            ) as response,
        ):
            assert (response.status, await response.text()) == (200, "1 change found")
        db = running.master.db

        async def built() -> bool:
            builds = await db.builds.get_builds()
            return bool(builds) and all(b.complete_at is not None for b in builds)

        await eventually(built, within=120)
        [build] = await db.builds.get_builds()
        result = await running.result(build.id)
    assert result.build.results == Results.SUCCESS
    assert result.stdout("show") == (
        f"event=push distinct=True branch=fog revision={p.SHA[5]} topics=['ci', 'light']\n"
    )
    props = result.properties
    assert props["event"] == ("push", "Change")
    assert props["github_distinct"] == (True, "Change")
    assert props["github.repository.topics"] == (["ci", "light"], "Change")
    assert props["branch"] == ("fog", "Build")
    assert props["revision"] == (p.SHA[5], "Build")
    assert props["scheduler"] == ("on-push", "Scheduler")

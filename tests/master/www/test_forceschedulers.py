"""GET forceschedulers on a real master: the running force schedulers and their fields, all and
by builder, as the UI's builder page reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port

BODY = """
c['builders'] = [
    util.BuilderConfig(name=n, workernames=["w1"], factory=util.BuildFactory()) for n in "abc"
]
c['schedulers'] = [
    schedulers.ForceScheduler(name="zeta", builderNames=["a", "b"], buttonName="Go",
        properties=[util.StringParameter(name="word", label="Word", default="hi")]),
    schedulers.ForceScheduler(name="alpha", builderNames=["b"], label="Alpha!"),
    schedulers.Triggerable(name="trig", builderNames=["c"]),
]
c['www'] = {{'port': {port}}}
"""


async def test_force_schedulers_all_and_by_builder(tmp_path: Path) -> None:
    port = free_port()
    async with (
        running_master(tmp_path, BODY.format(port=port)) as running,
        aiohttp.ClientSession() as http,
    ):
        base = f"http://127.0.0.1:{port}/api/v2"

        async def get(path: str, status: int = 200) -> Any:
            async with http.get(f"{base}/{path}") as resp:
                assert resp.status == status, await resp.text()
                return json.loads(await resp.text())

        everything = await get("forceschedulers?order=name")
        assert [f["name"] for f in everything["forceschedulers"]] == ["alpha", "zeta"]
        assert everything["meta"]["total"] == 2
        zeta = everything["forceschedulers"][1]
        assert zeta["button_name"] == "Go" and zeta["enabled"] is True
        assert zeta["builder_names"] == ["a", "b"]
        names = json.dumps(zeta["all_fields"])
        assert '"fullName": "word"' in names and '"default": "hi"' in names
        assert everything["forceschedulers"][0]["label"] == "Alpha!"

        ids = {b.name: b.id for b in await running.master.db.builders.get_builders()}
        by_builder = await get(f"builders/{ids['a']}/forceschedulers?order=name")
        assert [f["name"] for f in by_builder["forceschedulers"]] == ["zeta"]
        both = await get(f"builders/{ids['b']}/forceschedulers?order=-name&field=name")
        assert both["forceschedulers"] == [{"name": "zeta"}, {"name": "alpha"}]
        assert (await get(f"builders/{ids['c']}/forceschedulers"))["forceschedulers"] == []

        one = await get("forceschedulers/alpha")
        assert [f["name"] for f in one["forceschedulers"]] == ["alpha"]
        await get("forceschedulers/trig", 404)  # a Triggerable is not a force scheduler
        await get("forceschedulers?nosuch=1", 400)

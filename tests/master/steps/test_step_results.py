"""A custom step that records test results and build data, in a real build of a real master
(on each backend), read back over its REST API on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from buildyard.master.model.results import Results
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port

BODY = """
from buildyard.master.steps.base import BuildStep

c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}


class Report(BuildStep):
    name = "report"

    async def addTestResultSets(self):
        self.unit = await self.addTestResultSet("unit tests", "pass_fail", "boolean")

    async def run(self):
        for i in range(5):
            self.addTestResult(self.unit, str(i % 2), test_name=f"t{{i}}", line=i)
        timing = await self.addTestResultSet(None, "performance", "duration_ns")
        self.addTestResult(timing, "12", test_code_path="bench.py", duration_ns=12)
        await self.setBuildData("summary", b"\\x00 5 tests", "Report")
        return util.SUCCESS


c['builders'] = [util.BuilderConfig(
    name="b", workernames=["w1"], factory=util.BuildFactory([Report()]))]
"""


async def test_a_step_records_test_results_and_build_data(tmp_path: Path, db_url: str) -> None:
    www = free_port()
    async with running_master(tmp_path, BODY.format(www=www), db_url=db_url) as running:
        result = await running.build("b")
        assert [(s.name, s.results) for s in result.steps] == [("report", Results.SUCCESS)]
        api = f"http://127.0.0.1:{www}/api/v2"
        async with aiohttp.ClientSession(headers={"Accept": "application/json"}) as http:

            async def get(path: str) -> Any:
                async with http.get(f"{api}/{path}") as resp:
                    assert resp.status == 200, await resp.text()
                    return await resp.json()

            [build] = (await get("builds"))["builds"]
            [step] = (await get(f"builds/{build['buildid']}/steps"))["steps"]
            sets = (await get(f"steps/{step['stepid']}/test_result_sets"))["test_result_sets"]
            assert [
                (s["description"], s["complete"], s["tests_passed"], s["tests_failed"])
                for s in sets
            ] == [("unit tests", True, 2, 3), (None, True, None, None)]
            unit, timing = (s["test_result_setid"] for s in sets)
            results = (await get(f"test_result_sets/{unit}/results?order=line"))["test_results"]
            assert [(r["test_name"], r["line"], r["value"]) for r in results] == [
                (f"t{i}", i, str(i % 2)) for i in range(5)
            ]
            [bench] = (await get(f"test_result_sets/{timing}/results"))["test_results"]
            assert (bench["test_code_path"], bench["duration_ns"]) == ("bench.py", 12)

            data = await get("builders/b/builds/1/data")
            assert [(d["name"], d["length"], d["source"]) for d in data["build_data"]] == [
                ("summary", 9, "Report")
            ]
            async with http.get(f"{api}/builds/{build['buildid']}/data/summary/value") as resp:
                assert resp.status == 200
                assert await resp.read() == b"\x00 5 tests"

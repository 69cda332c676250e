"""The custom step of docs/custom-steps.md, run as written, in a real build."""

from __future__ import annotations

import re
from pathlib import Path

from buildyard.master.model.results import Results
from buildyard.testing.masters import running_master

DOC = Path(__file__).parents[3] / "docs" / "custom-steps.md"

# a test file for the documented step to run, downloaded first
SETUP = """
factory.steps.insert(0, steps.StringDownload(
    "import unittest\\n\\nclass T(unittest.TestCase):\\n"
    "    def test_a(self):\\n        pass\\n\\n    def test_b(self):\\n        pass\\n",
    workerdest="test_doc.py"))
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=factory)]
"""


async def test_the_documented_custom_step_runs(tmp_path: Path) -> None:
    [example] = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    body = example.replace("from buildyard.plugins import *\n", "") + SETUP
    async with running_master(tmp_path, body) as running:
        result = await running.build("b")
    assert [(s.name, s.results) for s in result.steps] == [
        ("string_download", Results.SUCCESS),
        ("count-tests", Results.SUCCESS),
    ]
    assert result.properties["tests-ran"] == (2, "CountTests")
    assert result.logs[("count-tests", "summary")] == "2 tests passed\n"

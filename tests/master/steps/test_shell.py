"""ShellCommand and custom steps on both workers, through real builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildyard.master.model.results import Results
from buildyard.testing.masters import running_master
from buildyard.testing.workers import KINDS

BODY = """
from buildyard.master.steps.base import BuildStep, ShellMixin

class Custom(ShellMixin, BuildStep):
    def __init__(self, **kwargs):
        kwargs = self.setupShellMixin(kwargs)
        super().__init__(**kwargs)

    async def run(self):
        cmd = await self.makeRemoteShellCommand(collectStdout=True)
        await self.runCommand(cmd)
        self.setProperty("seen", cmd.stdout.strip(), "Custom")
        return util.WARNINGS if cmd.rc == 0 else util.FAILURE

f = util.BuildFactory()
f.addStep(steps.ShellCommand(name="env", command=util.Interpolate("echo %(prop:word)s $V"),
                             env={"V": util.Property("word")}))
f.addStep(Custom(name="custom", command=["echo", "from custom"], warnOnWarnings=True))
f.addStep(steps.ShellCommand(name="skipped", command="false",
                             doStepIf=lambda step: step.getProperty("word") == "nope"))
f.addStep(steps.ShellCommand(name="hidden", command="true", hideStepIf=True))
f.addStep(steps.ShellCommand(name="tailed", logfiles={"out": "out.txt"},
                             command="echo one > out.txt; sleep 2.5; echo two >> out.txt"))
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=f)]
"""


@pytest.mark.parametrize("kind", KINDS)
async def test_shell_renderables_custom_steps_and_step_flags(tmp_path: Path, kind: str) -> None:
    async with running_master(tmp_path, BODY, worker=kind) as running:
        result = await running.build("b", properties={"word": "bird"})
    assert result.stdout("env") == "bird bird\n"
    assert result.step("env").results == Results.SUCCESS
    assert result.stdout("custom") == "from custom\n"
    assert result.step("custom").results == Results.WARNINGS
    assert result.properties["seen"] == ("from custom", "Custom")
    skipped = result.step("skipped")
    assert skipped.results == Results.SKIPPED
    assert skipped.state_string == "'false' (skipped)"
    assert result.step("hidden").hidden
    assert not result.step("env").hidden
    # logfiles: the file's lines in a stdio log of their own, as stdout (as Buildbot stores them)
    assert result.stdout("tailed", "out") == "one\ntwo\n"
    # warnOnWarnings: the build is WARNINGS
    assert result.build.results == Results.WARNINGS

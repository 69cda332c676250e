"""The Visual Studio and MSBuild steps in a build on each worker kind, running stand-ins for
devenv.com, msdev, msbuild and vcvarsall.bat that print recorded MSVC output and report the
command line and environment they got (see vstudio_standin.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from buildyard.master.model.results import Results
from buildyard.testing.masters import running_master
from buildyard.testing.workers import KINDS
from tests.master.steps import vstudio_standin as standin

# a mode from a property, checked when rendered
BAD_MODE = (
    "f.addStep(steps.VS2017(name='bad-mode', projectfile='app.sln',\n"
    "                       mode=util.Property('mode', default='everything')))\n"
)
# Buildbot's way to add a tool: a subclass of VisualStudio that sets its command in run()
SUBCLASS = """
from buildbot.steps.vstudio import VisualStudio

class Custom(VisualStudio):
    async def run(self):
        self.command = ['devenv.com', 'core.dsw', '/custom']
        return await super().run()

f.addStep(Custom(name='custom', PATH=[r'C:\\x']))
"""
BUILDER = "c['builders'] = [util.BuilderConfig(name='vs', workernames=['w1'], factory=f)]\n"


@pytest.mark.parametrize("kind", KINDS)
async def test_the_steps_in_a_build(tmp_path: Path, kind: str) -> None:
    script = standin.write_standin(tmp_path / "standin")
    body = standin.factory(script) + BAD_MODE + SUBCLASS + BUILDER
    async with running_master(tmp_path, body, worker=kind) as running:
        result = await running.build("vs")
    assert result.step("stand-ins").results == Results.SUCCESS, result.logs

    worker_path = os.environ["PATH"]  # the worker's own, which ${PATH} becomes
    for step, expected in standin.EXPECTED.items():
        seen = standin.records(result.logs[(step, "stdio")])
        for record in seen:
            record["env"]["PATH"] = standin.without_worker_path(record["env"]["PATH"], worker_path)
        assert seen == expected, step

    # devenv's output: 2 projects, 3 files, 2 warnings, 1 error; the command failed (rc 1)
    vs = result.step("vs2017")
    assert vs.results == Results.FAILURE
    assert (
        vs.state_string == "compile Release|Win32 2 projects 3 files 2 warnings 1 errors (failure)"
    )
    app = standin.APP_SLN
    assert result.logs[("vs2017", "warnings")] == "".join(
        f"o{line}\n" for line in (app[2], app[5], app[7], app[10])
    )
    assert result.logs[("vs2017", "errors")] == f"o{app[2]}\no{app[7]}\ne{app[9]}\n"

    # msdev: one warning and rc 0 make WARNINGS
    vc6 = result.step("vc6")
    assert vc6.results == Results.WARNINGS
    assert vc6.state_string == "compile 1 projects 1 files 1 warnings (warnings)"
    core = standin.CORE_DSW
    assert result.logs[("vc6", "warnings")] == f"o{core[0]}\no{core[3]}\n"
    assert result.logs[("vc6", "errors")] == f"o{core[0]}\n"

    vc8 = result.step("vc8")
    assert (vc8.results, vc8.state_string) == (Results.SUCCESS, "compile 1 projects 0 files")
    assert result.logs[("vc8", "errors")] == f"o{standin.LIB_SLN[0]}\n"

    msbuild = result.step("msbuild4")
    assert (msbuild.results, msbuild.state_string) == (
        Results.SUCCESS,
        "built app for Release|Win32",
    )
    assert result.logs[("msbuild4", "warnings")] == ""

    # MsBuild17's command is for cmd.exe: a POSIX shell refuses it, and the step fails
    newer = result.step("msbuild17")
    assert newer.results == Results.FAILURE
    assert standin.MSBUILD17 in result.logs[("msbuild17", "stdio")]
    assert newer.state_string == "compile 0 projects 0 files (failure)"
    bad = result.step("bad-mode")
    assert (bad.results, bad.state_string) == (Results.FAILURE, "failure")
    assert result.logs[("bad-mode", "err.text")] == (
        "VC141: mode must be one of 'build', 'rebuild' or 'clean', not 'everything'\n"
    )
    assert ("bad-mode", "stdio") not in result.logs  # nothing ran
    custom = result.step("custom")
    assert standin.records(result.logs[("custom", "stdio")]) == [
        {
            "program": "devenv.com",
            "args": ["core.dsw", "/custom"],
            "env": {"PATH": "C:\\x;", "INCLUDE": None, "LIB": None, "VCENV_BAT": None},
        }
    ]
    assert (custom.results, custom.state_string) == (
        Results.WARNINGS,
        "compile 1 projects 1 files 1 warnings (warnings)",
    )
    assert result.build.results == Results.FAILURE

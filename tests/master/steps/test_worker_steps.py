"""The worker file-system steps and CompositeStepMixin on both workers, through real builds."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from buildyard.master.model.results import Results
from buildyard.master.steps.worker import CopyDirectory, FileExists, RemoveDirectory
from buildyard.testing.masters import running_master
from buildyard.testing.workers import KINDS

BODY = """
import os
from buildyard.master.steps.base import BuildStep
from buildyard.master.steps.worker import (
    CompositeStepMixin, CopyDirectory, FileExists, MakeDirectory, RemoveDirectory,
    SetPropertiesFromEnv)


class Composite(CompositeStepMixin, BuildStep):
    async def run(self):
        await self.addLogForRemoteCommands("stdio")
        await self.runMkdir("build/comp/sub")
        seen = {
            "made": await self.pathExists("build/comp/sub"),
            "missing": await self.pathExists("build/comp/none"),
        }
        reader = await self.downloadFileContentToWorker("comp/hello.txt", "hello composite\\n",
                                                        mode=0o640)
        seen["downloaded"] = reader is not None
        seen["text"] = await self.getFileContentFromWorker("comp/hello.txt")
        seen["absent"] = await self.getFileContentFromWorker("comp/absent.txt")
        files = await self.runGlob("build/comp/*.txt")
        seen["globbed"] = [os.path.basename(self.workerPathToMasterPath(f)) for f in files]
        await self.runRmFile("build/comp/hello.txt")
        seen["removed"] = not await self.pathExists("build/comp/hello.txt")
        seen["failed"] = await self.runMkdir("build/tree/a.txt/x", abandonOnFailure=False)
        self.setProperty("composite", seen, "Composite")
        return util.SUCCESS


class Abandons(CompositeStepMixin, BuildStep):
    async def run(self):
        await self.runRmdir("build/comp")
        await self.runMkdir("build/tree/a.txt/x")
        return util.SUCCESS


f = util.BuildFactory()
f.addStep(MakeDirectory(dir="build/made/deep"))
f.addStep(MakeDirectory(name="mkdir-fails", dir="build/tree/a.txt/x", haltOnFailure=False))
f.addStep(CopyDirectory(src="build/tree", dest=util.Interpolate("build/%(prop:word)s")))
f.addStep(CopyDirectory(name="copy-fails", src="build/none", dest="build/x", haltOnFailure=False))
f.addStep(FileExists(file="build/bird/a.txt"))
f.addStep(FileExists(name="not-found", file="build/none", haltOnFailure=False))
f.addStep(FileExists(name="not-a-file", file="build/bird", haltOnFailure=False))
f.addStep(CopyDirectory(name="copy-again", src="build/tree", dest="build/gone"))
f.addStep(RemoveDirectory(dir="build/gone"))
f.addStep(SetPropertiesFromEnv(variables=["BUILDYARD_TEST_VAR", "BUILDYARD_UNSET_VAR"]))
f.addStep(Composite(name="composite"))
f.addStep(Abandons(name="abandons"))
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=f)]
"""


def tree_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("kind", KINDS)
async def test_worker_steps(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the worker inherits this process's environment
    monkeypatch.setenv("BUILDYARD_TEST_VAR", "from the worker")
    monkeypatch.delenv("BUILDYARD_UNSET_VAR", raising=False)
    async with running_master(tmp_path, BODY, worker=kind) as running:
        build_dir = running.worker_dir / "b" / "build"
        tree = build_dir / "tree"
        (tree / "sub").mkdir(parents=True)
        (tree / "a.txt").write_text("a\n")
        (tree / "sub" / "b.bin").write_bytes(os.urandom(10_000))
        expected = tree_digests(tree)
        result = await running.build("b", properties={"word": "bird"})

    def check(step: str, results: Results, state: str) -> None:
        found = result.step(step)
        assert (found.results, found.state_string) == (results, state), step

    check("MakeDirectory", Results.SUCCESS, "Created")
    assert (build_dir / "made" / "deep").is_dir()
    check("mkdir-fails", Results.FAILURE, "Create failed. (failure)")
    check("CopyDirectory", Results.SUCCESS, "Copied build/tree to build/bird")
    assert tree_digests(build_dir / "bird") == expected
    check("copy-fails", Results.FAILURE, "Copying build/none to build/x failed. (failure)")
    check("FileExists", Results.SUCCESS, "File found.")
    check("not-found", Results.FAILURE, "File not found. (failure)")
    check("not-a-file", Results.FAILURE, "Not a file. (failure)")
    check("copy-again", Results.SUCCESS, "Copied build/tree to build/gone")
    check("RemoveDirectory", Results.SUCCESS, "Deleted")
    assert not (build_dir / "gone").exists()
    assert tree_digests(tree) == expected

    check("SetPropertiesFromEnv", Results.SUCCESS, "Set")
    assert result.properties["BUILDYARD_TEST_VAR"] == ("from the worker", "WorkerEnvironment")
    assert "BUILDYARD_UNSET_VAR" not in result.properties
    assert result.logs[("SetPropertiesFromEnv", "properties")] == (
        "BUILDYARD_TEST_VAR = 'from the worker'\n"
    )

    check("composite", Results.SUCCESS, "finished")
    seen, source = result.properties["composite"]
    assert source == "Composite"
    assert seen == {
        "made": True,
        "missing": False,
        "downloaded": True,
        "text": "hello composite\n",
        "absent": None,
        "globbed": ["hello.txt"],
        "removed": True,
        "failed": True,
    }
    # the commands wrote into the step's stdio log
    assert "program finished with exit code" in result.logs[("composite", "stdio")]
    # runRmdir removed the tree; a failing command abandons the step
    check("abandons", Results.FAILURE, "finished (failure)")
    assert not (build_dir / "comp").exists()
    assert result.build.results == Results.FAILURE


def test_arguments() -> None:
    step = CopyDirectory("a", "b")
    assert (step.src, step.dest, step.timeout, step.maxTime) == ("a", "b", 120, None)
    assert (step.name, step.haltOnFailure, step.flunkOnFailure) == ("CopyDirectory", True, True)
    copied = FileExists(file="f").copy()
    assert isinstance(copied, FileExists)
    assert copied.file == "f"
    assert RemoveDirectory("d").description == ["Deleting"]

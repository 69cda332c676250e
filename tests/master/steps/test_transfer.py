"""Transfer steps on both workers, through one real build each: every byte checked."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from buildyard.common.errors import ConfigError
from buildyard.master.model.results import Results
from buildyard.master.steps.runtime import BuildRuntime
from buildyard.master.steps.transfer import (
    DirectoryUpload,
    FileDownload,
    FileUpload,
    JSONPropertiesDownload,
    MultipleFileUpload,
    StringDownload,
)
from buildyard.testing.masters import running_master
from buildyard.testing.workers import KINDS

STAMP = 1_500_000_000

BODY = """
import os
from buildyard.master.steps.transfer import (
    DirectoryUpload, FileDownload, FileUpload, JSONPropertiesDownload, JSONStringDownload,
    MultipleFileUpload, StringDownload)

OUT = {out!r}
SRC = {src!r}
f = util.BuildFactory()
# uploads
f.addStep(FileUpload(name="big", workersrc="big.bin", masterdest=os.path.join(OUT, "big.bin"),
                     keepstamp=True, mode=0o640))
f.addStep(FileUpload(name="relative", workersrc=util.Interpolate("%(prop:word)s.txt"),
                     masterdest="uploads/small.txt", url="http://example.org/small"))
f.addStep(FileUpload(name="too-big", workersrc="big.bin", masterdest=os.path.join(OUT, "cut.bin"),
                     maxsize=1000, haltOnFailure=False))
f.addStep(FileUpload(name="no-source", workersrc="nope.bin",
                     masterdest=os.path.join(OUT, "nope.bin"), haltOnFailure=False))
f.addStep(DirectoryUpload(name="tree", workersrc="tree", masterdest=os.path.join(OUT, "tree"),
                          compress="gz", url="http://example.org/tree", urlText="the tree"))
f.addStep(DirectoryUpload(name="no-tree", workersrc="nothing",
                          masterdest=os.path.join(OUT, "nothing"), haltOnFailure=False))
f.addStep(MultipleFileUpload(name="multiple", workersrcs=["bird.txt", "tree"],
                             masterdest=os.path.join(OUT, "multi"), keepstamp=True))
f.addStep(MultipleFileUpload(name="globbed", workersrcs=["*.txt"], glob=True,
                             masterdest=os.path.join(OUT, "globbed")))
f.addStep(MultipleFileUpload(name="multi-missing", workersrcs=["bird.txt", "nope.txt"],
                             masterdest=os.path.join(OUT, "multi-missing"), haltOnFailure=False))
# downloads
f.addStep(FileDownload(name="download", mastersrc=SRC, workerdest="dl/data.bin", mode=0o604))
f.addStep(FileDownload(name="relative-download", mastersrc="files/src.bin",
                       workerdest="dl/relative.bin", workdir="elsewhere"))
f.addStep(FileDownload(name="download-cut", mastersrc=SRC, workerdest="dl/cut.bin",
                       maxsize=20000, haltOnFailure=False))
f.addStep(FileDownload(name="download-missing", mastersrc=SRC + ".missing",
                       workerdest="dl/missing.bin", haltOnFailure=False))
f.addStep(StringDownload(util.Interpolate("hello %(prop:word)s\\n"), workerdest="s.txt",
                         mode=0o755, name="string"))
f.addStep(JSONStringDownload({{"a": [1, util.Property("word")]}}, workerdest="j.json"))
f.addStep(JSONPropertiesDownload("props.json"))
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=f)]
"""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


def make_worker_files(build_dir: Path) -> None:
    build_dir.mkdir(parents=True)
    (build_dir / "big.bin").write_bytes(os.urandom(600_000))  # several 256 KiB blocks
    os.utime(build_dir / "big.bin", (STAMP + 7, STAMP))
    (build_dir / "bird.txt").write_text("a bird\n")
    os.utime(build_dir / "bird.txt", (STAMP, STAMP + 60))
    (build_dir / "other.txt").write_text("another\n")
    tree = build_dir / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "a.txt").write_text("a\n")
    (tree / "sub" / "b.bin").write_bytes(os.urandom(70_000))
    (tree / "sub" / "deeper" / "c.txt").write_text("c\n" * 1000)
    (tree / "empty.txt").write_bytes(b"")


@pytest.mark.parametrize("kind", KINDS)
async def test_transfers(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(100_000))  # several 16 KiB blocks
    basedir = tmp_path / "master"
    # the build does not pass the master's directory yet (see transfer._master_path)
    monkeypatch.setattr(BuildRuntime, "master_basedir", basedir, raising=False)
    body = BODY.format(out=str(out), src=str(src))
    async with running_master(tmp_path, body, worker=kind) as running:
        (basedir / "files").mkdir()
        (basedir / "files" / "src.bin").write_bytes(src.read_bytes())
        worker_build = running.worker_dir / "b" / "build"
        make_worker_files(worker_build)
        result = await running.build("b", properties={"word": "bird"})

    def check(step: str, results: Results, state: str) -> None:
        found = result.step(step)
        assert (found.results, found.state_string) == (results, state), step

    # FileUpload: the bytes, the kept times, the mode
    check("big", Results.SUCCESS, "uploading big.bin")
    stamp = (out / "big.bin").stat()  # before reading it changes the access time
    assert (stamp.st_atime, stamp.st_mtime) == (STAMP + 7, STAMP)
    assert digest(out / "big.bin") == digest(worker_build / "big.bin")
    assert stamp.st_mode & 0o777 == 0o640
    assert f"sending {worker_build / 'big.bin'}" in result.logs[("big", "stdio")]
    # relative to the master's directory; a URL named after the file
    check("relative", Results.SUCCESS, "uploading bird.txt")
    assert (basedir / "uploads" / "small.txt").read_text() == "a bird\n"
    [url] = result.step("relative").urls
    assert (url.name, url.url) == ("small.txt", "http://example.org/small")
    # maxsize: FAILURE, the worker's message, nothing left on the master
    check("too-big", Results.FAILURE, "uploading big.bin (failure)")
    assert "Maximum filesize reached, truncating file" in result.logs[("too-big", "stdio")]
    assert not (out / "cut.bin").exists()
    check("no-source", Results.FAILURE, "uploading nope.bin (failure)")
    assert "Cannot open file" in result.logs[("no-source", "stdio")]
    assert not (out / "nope.bin").exists()

    # DirectoryUpload (gzip)
    check("tree", Results.SUCCESS, "uploading tree")
    assert tree_digests(out / "tree") == tree_digests(worker_build / "tree")
    assert len(tree_digests(out / "tree")) == 4
    [url] = result.step("tree").urls
    assert (url.name, url.url) == ("the tree", "http://example.org/tree")
    check("no-tree", Results.FAILURE, "uploading nothing (failure)")
    assert "Cannot read directory" in result.logs[("no-tree", "stdio")]
    assert not (out / "nothing").exists()

    # MultipleFileUpload: a file and a directory; globbed; stops at a missing one
    check("multiple", Results.SUCCESS, "uploading 2 files")
    assert digest(out / "multi" / "bird.txt") == digest(worker_build / "bird.txt")
    assert (out / "multi" / "bird.txt").stat().st_mtime == STAMP + 60
    assert tree_digests(out / "multi" / "tree") == tree_digests(worker_build / "tree")
    check("globbed", Results.SUCCESS, "uploading 2 files")
    assert sorted(p.name for p in (out / "globbed").iterdir()) == ["bird.txt", "other.txt"]
    assert (out / "globbed" / "other.txt").read_text() == "another\n"
    check("multi-missing", Results.FAILURE, "uploading 2 files (failure)")
    assert result.logs[("multi-missing", "stderr")] == (
        "File build/nope.txt not available at worker\n"
    )
    assert (out / "multi-missing" / "bird.txt").read_text() == "a bird\n"

    # FileDownload: the bytes and the mode
    check("download", Results.SUCCESS, "downloading to data.bin")
    assert digest(worker_build / "dl" / "data.bin") == digest(src)
    assert (worker_build / "dl" / "data.bin").stat().st_mode & 0o777 == 0o604
    check("relative-download", Results.SUCCESS, "downloading to relative.bin")
    relative = running.worker_dir / "b" / "elsewhere" / "dl" / "relative.bin"
    assert digest(relative) == digest(src)
    check("download-cut", Results.FAILURE, "downloading to cut.bin (failure)")
    assert "Maximum filesize reached" in result.logs[("download-cut", "stdio")]
    assert (worker_build / "dl" / "cut.bin").read_bytes() == src.read_bytes()[:20000]
    check("download-missing", Results.FAILURE, "downloading to missing.bin (failure)")
    assert result.logs[("download-missing", "stderr")] == (
        f"File {str(src) + '.missing'!r} not available at master\n"
    )
    assert not (worker_build / "dl" / "missing.bin").exists()

    # strings and JSON
    check("string", Results.SUCCESS, "downloading to s.txt")
    assert (worker_build / "s.txt").read_text() == "hello bird\n"
    assert (worker_build / "s.txt").stat().st_mode & 0o777 == 0o755
    check("json_download", Results.SUCCESS, "downloading to j.json")
    assert json.loads((worker_build / "j.json").read_text()) == {"a": [1, "bird"]}
    check("json_properties_download", Results.SUCCESS, "downloading to props.json")
    written = json.loads((worker_build / "props.json").read_text())
    assert set(written) == {"properties", "sourcestamps"}
    assert written["properties"]["word"] == "bird"
    assert written["properties"]["buildername"] == "b"
    assert written["properties"]["workername"] == "w1"
    assert written["sourcestamps"] == [
        {
            "branch": None,
            "revision": None,
            "repository": "",
            "project": "",
            "codebase": "",
            "patch_level": None,
            "patch_body": None,
            "patch_subdir": None,
            "patch_author": None,
            "patch_comment": None,
        }
    ]
    assert result.build.results == Results.FAILURE


def test_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match="takes at least 3 arguments"):
        FileUpload(workersrc="a")
    with pytest.raises(ConfigError, match="takes at least 3 arguments"):
        FileDownload("a")
    with pytest.raises(ConfigError, match="takes at least 2 arguments"):
        JSONPropertiesDownload()
    with pytest.raises(ConfigError, match="mode must be an integer or None"):
        FileUpload("a", "b", mode="0644")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="got '0644'"):
        StringDownload("s", "b", mode="0644")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'compress' must be one of"):
        DirectoryUpload("a", "b", compress="zip")
    with pytest.raises(ConfigError, match="'compress' must be one of"):
        MultipleFileUpload(["a"], "b", compress="xz")
    with pytest.raises(ConfigError, match="unexpected keyword"):
        FileUpload("a", "b", command="x")
    step = FileUpload("a", "b", keepstamp=True)
    assert (step.name, step.blocksize, step.haltOnFailure) == ("upload", 256 * 1024, True)
    assert step.copy() == step
    assert DirectoryUpload("a", "b").blocksize == 16 * 1024

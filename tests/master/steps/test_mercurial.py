"""steps.Mercurial through real builds on both workers (buildyard's and the stock
buildbot-worker), against repositories made with hg."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from buildyard.common.errors import ConfigErrors, collecting_config_errors
from buildyard.master.model.results import Results
from buildyard.master.steps.source.mercurial import Mercurial
from buildyard.testing.masters import BuildResult, running_master
from buildyard.testing.workers import KINDS, STOCK_PB
from tests.master.steps.test_git import stamp

HG_ENV = {**os.environ, "HGPLAIN": "1", "HGRCPATH": os.devnull, "HGUSER": "Test <t@example.org>"}


def hg(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["hg", *args], cwd=cwd, env=HG_ENV, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    hg(repo, "addremove", "-q")
    hg(repo, "commit", "-m", message)
    return hg(repo, "log", "-r", ".", "-T", "{node}")


def make_repo(path: Path, files: dict[str, str]) -> str:
    path.mkdir(parents=True)
    hg(path, "init")
    return commit(path, files, "first")


def builders(steps: dict[str, str], **names: Path) -> str:
    lines = [f"{key} = {str(value)!r}" for key, value in names.items()]
    lines.append("c['builders'] = []")
    for name, step in steps.items():
        lines += [
            "f = util.BuildFactory()",
            f"f.addStep(steps.{step})",
            f"c['builders'].append(util.BuilderConfig(name={name!r}, workernames=['w1'],"
            " factory=f))",
        ]
    return "\n".join(lines) + "\n"


def got(result: BuildResult) -> Any:
    assert result.build.results == Results.SUCCESS, result.logs
    value, source = result.properties["got_revision"]
    assert source == "Mercurial"
    return value


@pytest.mark.parametrize("kind", KINDS)
async def test_incremental_inrepo_branches_revisions_and_dirname(tmp_path: Path, kind: str) -> None:
    repo = tmp_path / "repo"
    first = make_repo(repo, {"a.txt": "one\n"})
    hg(repo, "branch", "-q", "stable")
    on_stable = commit(repo, {"stable.txt": "s\n"}, "on stable")
    hg(repo, "update", "-q", "default")
    # branchType dirname: each branch a repository below the base URL
    base = tmp_path / "repos"
    release = base / "release"
    on_release = make_repo(release, {"r.txt": "r\n"})
    body = builders(
        {
            "inc": "Mercurial(repourl=REPO, branchType='inrepo')",
            "dir": "Mercurial(repourl=BASE + '/', defaultBranch='release')",
            "keep": "Mercurial(repourl=REPO, branchType='inrepo', clobberOnBranchChange=False)",
        },
        REPO=repo,
        BASE=base,
    )
    async with running_master(tmp_path, body, worker=kind) as running:
        checkout = running.worker_dir / "inc" / "build"
        result = await running.build("inc")
        assert got(result) == first
        assert "hg clone --noupdate" in result.logs[("hg", "stdio")]
        assert (checkout / "a.txt").read_text() == "one\n"

        (checkout / "untracked.txt").write_text("mine\n")
        (checkout / "added.txt").write_text("added, not committed\n")
        hg(checkout, "add", "added.txt")
        second = commit(repo, {"a.txt": "two\n"}, "second")
        result = await running.build("inc")
        assert got(result) == second
        assert "hg pull" in result.logs[("hg", "stdio")]
        assert (checkout / "a.txt").read_text() == "two\n"
        # incremental keeps untracked files, and removes the ones added but not committed
        assert (checkout / "untracked.txt").exists()
        assert not (checkout / "added.txt").exists()

        # a patch: applied; the next build starts from a clean tree
        diff = "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-two\n+patched\n"
        result = await running.build("inc", sourcestamps=stamp(patch_body=diff, patch_level=1))
        assert got(result) == second
        assert (checkout / "a.txt").read_text() == "patched\n"
        assert result.logs[("hg", "patch")] == diff
        result = await running.build("inc")
        assert got(result) == second
        assert (checkout / "a.txt").read_text() == "two\n"
        assert not (checkout / ".buildbot-patched").exists()
        assert not (checkout / "untracked.txt").exists()

        # the change's revision
        result = await running.build("inc", sourcestamps=stamp(revision=first))
        assert got(result) == first
        assert (checkout / "a.txt").read_text() == "one\n"

        # another in-repo branch: clobbered (clobberOnBranchChange), then on that branch
        result = await running.build("inc", sourcestamps=stamp(branch="stable"))
        assert got(result) == on_stable
        assert "needs 'stable': clobbered" in result.logs[("hg", "branch")]
        assert hg(checkout, "identify", "--branch") == "stable"

        result = await running.build("dir")
        assert got(result) == on_release
        assert (running.worker_dir / "dir" / "build" / "r.txt").exists()

        # clobberOnBranchChange=False: the branch change is an update, untracked files stay
        kept = running.worker_dir / "keep" / "build"
        got(await running.build("keep"))
        (kept / "untracked.txt").write_text("mine\n")
        result = await running.build("keep", sourcestamps=stamp(branch="stable"))
        assert got(result) == on_stable
        assert ("hg", "branch") not in result.logs
        assert hg(kept, "identify", "--branch") == "stable"
        assert (kept / "untracked.txt").exists()


@pytest.mark.parametrize("kind", KINDS)
async def test_full_methods_and_failures(tmp_path: Path, kind: str) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {"a.txt": "one\n", ".hgignore": "syntax: glob\n*.o\n"})
    methods = ("clean", "fresh", "clobber")
    steps = {m: f"Mercurial(repourl=REPO, mode='full', method={m!r})" for m in methods}
    steps["nohg"] = "Mercurial(repourl=REPO, env={'PATH': '/nonexistent'})"
    steps["missing"] = "Mercurial(repourl=MISSING, retry=(0.1, 1))"
    body = builders(steps, REPO=repo, MISSING=tmp_path / "missing")
    async with running_master(tmp_path, body, worker=kind) as running:
        for method in methods:
            got(await running.build(method))
            checkout = running.worker_dir / method / "build"
            (checkout / "junk.txt").write_text("untracked\n")
            (checkout / "obj.o").write_text("ignored\n")
            (checkout / ".hg" / "marker").write_text("in .hg\n")
        second = commit(repo, {"a.txt": "two\n"}, "second")
        results = {method: await running.build(method) for method in methods}
        nohg = await running.build("nohg")
        missing = await running.build("missing")

    def left(method: str) -> set[str]:
        checkout = running.worker_dir / method / "build"
        assert (checkout / "a.txt").read_text() == "two\n"
        return {f for f in ("junk.txt", "obj.o", ".hg/marker") if (checkout / f).exists()}

    assert all(got(r) == second for r in results.values())
    assert left("clean") == {"obj.o", ".hg/marker"}  # purge: ignored files stay
    assert left("fresh") == {".hg/marker"}  # purge --all
    assert left("clobber") == set()
    assert missing.build.results == Results.FAILURE
    assert f"repository {tmp_path / 'missing'} not found" in missing.logs[("hg", "stdio")]
    # as Buildbot: a worker without hg is a setup error, EXCEPTION, saying so
    assert nohg.build.results == Results.EXCEPTION
    assert nohg.logs[("hg", "err.text")] == "Mercurial is not installed on worker\n"
    # retry: a second clone into the removed directory
    clones = [
        line for line in missing.logs[("hg", "stdio")].splitlines() if "hg clone" in line[:12]
    ]
    assert len(clones) == 2


async def test_a_stock_worker_over_pb(tmp_path: Path) -> None:
    """The stock worker with its default protocol (PB) runs the same remote commands."""
    repo = tmp_path / "repo"
    first = make_repo(repo, {"a.txt": "one\n"})
    body = builders({"inc": "Mercurial(repourl=REPO)"}, REPO=repo)
    async with running_master(tmp_path, body, worker=STOCK_PB) as running:
        assert got(await running.build("inc")) == first
        second = commit(repo, {"a.txt": "two\n"}, "second")
        assert got(await running.build("inc")) == second
        assert (running.worker_dir / "inc" / "build" / "a.txt").read_text() == "two\n"


def test_configuration_errors_are_named() -> None:
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        Mercurial(repourl="r", branchType="named")
        Mercurial(repourl="r", mode="partial")
        Mercurial(repourl="r", mode="full", method="copy")
        Mercurial()
        Mercurial(baseURL="https://hg.example.org/")
    messages = [e.message for e in errors.errors]
    assert messages[:4] == [
        "Mercurial: branchType named is not one of ('inrepo', 'dirname')",
        "Mercurial: mode partial is not one of ['incremental', 'full']",
        "Mercurial: method copy is not one of (None, 'clean', 'fresh', 'clobber')",
        "Mercurial: you must provide a repourl",
    ]
    assert "baseURL is not an argument of Buildbot 4.3's Mercurial step" in messages[4]

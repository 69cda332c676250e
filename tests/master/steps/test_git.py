"""steps.Git through real builds on both workers, against repositories made with git."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.testing.masters import BuildResult, running_master
from buildyard.testing.workers import KINDS

pytestmark = pytest.mark.parametrize("kind", KINDS)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "protocol.file.allow=always", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def make_repo(path: Path, files: dict[str, str]) -> str:
    """A repository at ``path`` whose branch ``main`` has one commit with ``files``."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test Author")
    git(path, "config", "user.email", "author@example.org")
    return commit(path, files, "first")


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def stamp(
    *, revision: str | None = None, branch: str | None = None, codebase: str = "", **extra: Any
) -> list[SourceStampSpec]:
    spec: SourceStampSpec = {
        "branch": branch,
        "revision": revision,
        "repository": "",
        "project": "",
        "codebase": codebase,
    }
    spec.update(extra)  # type: ignore[typeddict-item]  # the patch_* keys
    return [spec]


def builders(repo: Path, steps: dict[str, str]) -> str:
    """master.cfg lines: one builder per name, whose factory has the one step given."""
    lines = [
        "from buildyard.master.steps.source.git import Git",
        f"REPO = {str(repo)!r}",
        "c['builders'] = []",
    ]
    for name, step in steps.items():
        lines += [
            "f = util.BuildFactory()",
            f"f.addStep({step})",
            f"c['builders'].append(util.BuilderConfig(name={name!r}, workernames=['w1'],"
            " factory=f))",
        ]
    return "\n".join(lines) + "\n"


def got(result: BuildResult) -> Any:
    value, source = result.properties["got_revision"]
    assert source == "Git"
    return value


def succeeded(result: BuildResult) -> BuildResult:
    assert result.build.results == Results.SUCCESS, result.logs
    return result


async def test_incremental_updates_to_new_commits_revisions_and_branches(
    tmp_path: Path, kind: str
) -> None:
    repo = tmp_path / "repo"
    first = make_repo(repo, {"a.txt": "one\n"})
    git(repo, "checkout", "-q", "-b", "feature")
    feature = commit(repo, {"feature.txt": "f\n"}, "feature")
    git(repo, "checkout", "-q", "main")
    body = builders(repo, {"inc": "Git(repourl=REPO)"})
    async with running_master(tmp_path, body, worker=kind) as running:
        checkout = running.worker_dir / "inc" / "build"

        result = succeeded(await running.build("inc"))
        assert got(result) == first
        assert result.step("git").state_string == "update"
        assert "git clone" in result.logs[("git", "stdio")]
        assert (checkout / "a.txt").read_text() == "one\n"

        (checkout / "untracked.txt").write_text("mine\n")
        second = commit(repo, {"a.txt": "two\n"}, "second")
        result = succeeded(await running.build("inc"))
        assert got(result) == second
        assert "git fetch" in result.logs[("git", "stdio")]
        assert (checkout / "a.txt").read_text() == "two\n"
        # incremental leaves what is not tracked
        assert (checkout / "untracked.txt").exists()

        result = succeeded(await running.build("inc", sourcestamps=stamp(revision=first)))
        assert got(result) == first
        assert (checkout / "a.txt").read_text() == "one\n"

        result = succeeded(await running.build("inc", sourcestamps=stamp(branch="feature")))
        assert got(result) == feature
        assert (checkout / "feature.txt").exists()
        # the checkout is on a branch named as the stamp's
        assert git(checkout, "rev-parse", "--abbrev-ref", "HEAD") == "feature"


async def test_full_mode_methods(tmp_path: Path, kind: str) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {"a.txt": "one\n", ".gitignore": "*.o\n"})
    methods = ("clean", "fresh", "clobber", "copy")
    body = builders(repo, {m: f"Git(repourl=REPO, mode='full', method={m!r})" for m in methods})
    async with running_master(tmp_path, body, worker=kind) as running:
        for method in methods:
            succeeded(await running.build(method))
        for method in methods:
            dirs = ["build", "source"] if method == "copy" else ["build"]
            for name in dirs:
                checkout = running.worker_dir / method / name
                (checkout / "junk.txt").write_text("untracked\n")
                (checkout / "obj.o").write_text("ignored\n")
                (checkout / ".git" / "marker").write_text("in .git\n")
        second = commit(repo, {"a.txt": "two\n"}, "second")
        results = {method: succeeded(await running.build(method)) for method in methods}

    def left(method: str, name: str = "build") -> set[str]:
        checkout = running.worker_dir / method / name
        assert (checkout / "a.txt").read_text() == "two\n"
        files = {"junk.txt", "obj.o", ".git/marker"}
        return {f for f in files if (checkout / f).exists()}

    for method in methods:
        assert got(results[method]) == second
    stdio = results["clean"].logs[("git", "stdio")]
    assert "git clean -f -f -d\n" in stdio
    assert "git clean -f -f -d -x" in results["fresh"].logs[("git", "stdio")]
    # clean keeps ignored files, fresh does not; clobber starts from nothing
    assert left("clean") == {"obj.o", ".git/marker"}
    assert left("fresh") == {".git/marker"}
    assert left("clobber") == set()
    # copy: the kept 'source' repository is updated incrementally, then copied afresh
    assert left("copy", "source") == {"junk.txt", "obj.o", ".git/marker"}
    assert left("copy") == {"junk.txt", "obj.o", ".git/marker"}
    assert "cp -R" in results["copy"].logs[("git", "stdio")]


async def test_shallow_submodules_codebase_patch_and_latest(tmp_path: Path, kind: str) -> None:
    repo = tmp_path / "repo"
    first = make_repo(repo, {"a.txt": "one\n"})
    head = commit(repo, {"a.txt": "two\n"}, "second")
    git(repo, "tag", "-a", "v1", "-m", "v1")
    lib = tmp_path / "lib"
    make_repo(lib, {"lib.txt": "library\n"})
    outer = tmp_path / "outer"
    make_repo(outer, {"outer.txt": "outer\n"})
    git(outer, "submodule", "add", "-q", str(lib), "lib")
    git(outer, "commit", "-q", "-m", "add lib")
    diff = "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-two\n+patched\n"
    body = builders(
        repo,
        {
            # git ignores --depth for a local path
            "shallow": "Git(repourl='file://' + REPO, mode='full', method='clobber', shallow=True)",
            "submodules": (
                f"Git(repourl={str(outer)!r}, submodules=True,"
                " config={'protocol.file.allow': 'always'})"
            ),
            "codebase": "Git(repourl=REPO, codebase='cb', getDescription=True)",
            "patched": "Git(repourl=REPO)",
            "latest": "Git(repourl=REPO, alwaysUseLatest=True)",
        },
    )
    async with running_master(tmp_path, body, worker=kind) as running:
        work = running.worker_dir

        result = succeeded(await running.build("shallow"))
        assert got(result) == head
        assert "--depth 1" in result.logs[("git", "stdio")]
        assert git(work / "shallow" / "build", "rev-list", "--count", "HEAD") == "1"

        result = succeeded(await running.build("submodules"))
        assert (work / "submodules" / "build" / "lib" / "lib.txt").read_text() == "library\n"
        assert "-c protocol.file.allow=always" in result.logs[("git", "stdio")]

        result = succeeded(
            await running.build("codebase", sourcestamps=stamp(codebase="cb", revision=head))
        )
        assert got(result) == {"cb": head}
        assert result.properties["commit-description"] == ({"cb": "v1"}, "Git")
        assert result.step("git-cb").state_string == "update cb"

        result = succeeded(
            await running.build("patched", sourcestamps=stamp(patch_body=diff, patch_level=1))
        )
        checkout = work / "patched" / "build"
        assert (checkout / "a.txt").read_text() == "patched\n"
        assert (checkout / ".buildbot-patched").exists()
        assert not (checkout / ".buildbot-diff").exists()
        assert result.logs[("git", "patch")] == diff
        assert got(result) == head
        # the next build starts from a clean tree
        result = succeeded(await running.build("patched"))
        assert (checkout / "a.txt").read_text() == "two\n"
        assert not (checkout / ".buildbot-patched").exists()

        result = succeeded(await running.build("latest", sourcestamps=stamp(revision=first)))
        assert got(result) == head


async def test_failures_end_the_step_failure_with_the_reason_in_its_log(
    tmp_path: Path, kind: str
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {"a.txt": "one\n"})
    missing = tmp_path / "missing"
    body = builders(
        repo,
        {
            "bad": f"Git(repourl={str(missing)!r}, retry=(0.1, 1))",
            "nogit": "Git(repourl=REPO, env={'PATH': '/nonexistent'})",
            "codebase": "Git(repourl=REPO, codebase='other')",
        },
    )
    async with running_master(tmp_path, body, worker=kind) as running:
        bad = await running.build("bad")
        nogit = await running.build("nogit")
        codebase = await running.build("codebase")
    for result in (bad, nogit):
        assert result.build.results == Results.FAILURE
        assert result.step("git").state_string == "update (failure)"
    # git's own words are in the log
    assert f"'{missing}' does not exist" in bad.logs[("git", "stdio")]
    # retry: one more clone into a removed directory
    clones = [line for line in bad.logs[("git", "stdio")].splitlines() if line[1:10] == "git clone"]
    assert len(clones) == 2
    assert "No such file or directory" in nogit.logs[("git", "stdio")]
    assert codebase.build.results == Results.FAILURE
    # Buildbot's words, suffix included
    step = codebase.step("git-other")
    assert step.state_string == "Codebase other not in build other (failure)"
    assert "No sourcestamp found in build for codebase 'other'" in codebase.logs[(step.name, "log")]

"""steps.GitHub through real builds: a pull request's merge ref (a branch ending in /merge) is
checked out as it is now, whatever revision the build was asked for; other branches as Git."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildyard.testing.masters import BuildResult
from buildyard.testing.workers import KINDS
from tests.master.steps.test_git import builders, commit, git, make_repo, stamp, succeeded

pytestmark = pytest.mark.parametrize("kind", KINDS)


def got(result: BuildResult) -> object:
    value, source = result.properties["got_revision"]
    assert source == "GitHub"  # the step's class, as in Buildbot
    return value


async def test_merge_refs_ignore_the_revision(tmp_path: Path, kind: str) -> None:
    from buildyard.testing.masters import running_master

    repo = tmp_path / "repo"
    first = make_repo(repo, {"a.txt": "one\n"})
    git(repo, "checkout", "-q", "-b", "pull/7/merge")
    merged = commit(repo, {"a.txt": "merged\n"}, "merge of the pull request")
    git(repo, "checkout", "-q", "main")
    body = builders(repo, {"gh": "GitHub(repourl=REPO)"}).replace(
        "import Git\n", "import Git\nfrom buildyard.master.steps.source.forges import GitHub\n"
    )
    async with running_master(tmp_path, body, worker=kind) as running:
        checkout = running.worker_dir / "gh" / "build"

        # the merge ref: the recorded revision (here an older commit) is not used
        result = succeeded(
            await running.build("gh", sourcestamps=stamp(branch="pull/7/merge", revision=first))
        )
        assert got(result) == merged
        assert (checkout / "a.txt").read_text() == "merged\n"

        # any other branch: the revision is checked out, as with Git
        result = succeeded(
            await running.build("gh", sourcestamps=stamp(branch="main", revision=first))
        )
        assert got(result) == first

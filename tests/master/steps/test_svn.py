"""steps.SVN through real builds on buildyard's worker and the stock buildbot-worker 4.3.0
(msgpack, and PB for Buildbot's obfuscated password), against repositories made with
svnadmin (file:// URLs, and svnserve on loopback for username and password)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from buildyard.common.errors import ConfigErrors, collecting_config_errors
from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.master.steps.source.svn import SVN, canonical_svn_url, unversioned_files
from buildyard.testing.masters import BuildResult, running_master
from buildyard.testing.svn import SvnRepo, SvnServe, svn_available
from buildyard.testing.workers import KINDS, STOCK_PB

pytestmark = pytest.mark.skipif(not svn_available(), reason="needs subversion")


def stamp(revision: str | None = None) -> list[SourceStampSpec]:
    return [{"branch": None, "revision": revision, "repository": "", "project": "", "codebase": ""}]


def builders(url: str, steps: dict[str, str]) -> str:
    """master.cfg lines: one builder per name, whose factory has the one SVN step given."""
    lines = [f"URL = {url!r}", "c['builders'] = []"]
    for name, step in steps.items():
        lines += [
            "f = util.BuildFactory()",
            f"f.addStep({step})",
            f"c['builders'].append(util.BuilderConfig(name={name!r}, workernames=['w1'],"
            " factory=f))",
        ]
    return "\n".join(lines) + "\n"


def succeeded(result: BuildResult) -> BuildResult:
    assert result.build.results == Results.SUCCESS, result.logs
    return result


def got(result: BuildResult) -> Any:
    value, source = result.properties["got_revision"]
    assert source == "SVN"
    return value


@pytest.fixture
def repo(tmp_path: Path) -> SvnRepo:
    repo = SvnRepo(tmp_path / "repo")
    repo.commit("layout", {"trunk/a.txt": "one\n"}, dirs=("branches",))
    # *.o is ignored in trunk
    repo.svn("propset", "-q", "svn:ignore", "*.o", "trunk")
    repo.svn("commit", "-q", "-m", "ignore objects")
    repo.svn("update", "-q")
    return repo


@pytest.mark.parametrize("kind", KINDS)
async def test_incremental_then_full_methods(tmp_path: Path, kind: str, repo: SvnRepo) -> None:
    first = repo.commit("two", {"trunk/a.txt": "two\n"})
    methods = ("clean", "fresh", "clobber", "copy", "export")
    steps = {
        "inc": "steps.SVN(repourl=URL)",
        **{m: f"steps.SVN(repourl=URL, mode='full', method={m!r})" for m in methods},
        "keep": "steps.SVN(repourl=URL, mode='full', keep_on_purge=['keep.txt'])",
        "last": "steps.SVN(repourl=URL, preferLastChangedRev=True)",
        "depth": "steps.SVN(repourl=URL, depth='files')",
        "nosvn": "steps.SVN(repourl=URL, env={'PATH': '/nonexistent'})",
    }
    body = builders(f"{repo.url}/trunk", steps)
    async with running_master(tmp_path, body, worker=kind) as running:
        checkout = running.worker_dir / "inc" / "build"
        result = succeeded(await running.build("inc"))
        assert got(result) == first
        stdio = result.logs[("svn", "stdio")]
        assert "svn checkout" in stdio
        assert f"Got SVN revision {first}" in stdio
        assert (checkout / "a.txt").read_text() == "two\n"

        (checkout / "untracked.txt").write_text("mine\n")
        second = repo.commit("three", {"trunk/a.txt": "three\n"})
        result = succeeded(await running.build("inc"))
        assert got(result) == second
        assert "svn update" in result.logs[("svn", "stdio")]
        assert (checkout / "a.txt").read_text() == "three\n"
        assert (checkout / "untracked.txt").exists()  # incremental leaves it

        # the build's revision is the one checked out
        result = succeeded(await running.build("inc", sourcestamps=stamp(first)))
        assert got(result) == first
        assert (checkout / "a.txt").read_text() == "two\n"

        # a working copy of another URL is replaced by a checkout of this one
        other = running.worker_dir / "keep" / "build"
        repo.svn("checkout", "-q", f"{repo.url}/branches", str(other), cwd=tmp_path)
        succeeded(await running.build("keep"))
        assert (other / "a.txt").exists()

        for method in methods:
            succeeded(await running.build(method))
        for name in (*methods, "keep"):
            build_dir = running.worker_dir / name / "build"
            (build_dir / "junk.txt").write_text("untracked\n")
            (build_dir / "obj.o").write_text("ignored\n")
            (build_dir / "keep.txt").write_text("kept\n")
        third = repo.commit("four", {"trunk/a.txt": "four\n"})
        for name in (*methods, "keep"):
            result = succeeded(await running.build(name))
            assert got(result) == third, name
            build_dir = running.worker_dir / name / "build"
            assert (build_dir / "a.txt").read_text() == "four\n", name
            present = {p: (build_dir / p).exists() for p in ("junk.txt", "obj.o", "keep.txt")}
            expected = {
                # clean: what svn status lists goes, ignored files stay
                "clean": {"junk.txt": False, "obj.o": True, "keep.txt": False},
                "fresh": {"junk.txt": False, "obj.o": False, "keep.txt": False},
                "clobber": {"junk.txt": False, "obj.o": False, "keep.txt": False},
                "copy": {"junk.txt": False, "obj.o": False, "keep.txt": False},
                "export": {"junk.txt": False, "obj.o": False, "keep.txt": False},
                "keep": {"junk.txt": False, "obj.o": False, "keep.txt": True},
            }[name]
            assert present == expected, name
        assert (running.worker_dir / "copy" / "build" / ".svn").is_dir()
        assert not (running.worker_dir / "export" / "build" / ".svn").exists()
        assert (running.worker_dir / "export" / "source" / ".svn").is_dir()

        # depth: the files of trunk, not its directories
        trunk_last = repo.commit("a directory", {"trunk/sub/s.txt": "s\n"})
        result = succeeded(await running.build("depth"))
        assert "--depth files" in result.logs[("svn", "stdio")]
        depth_dir = running.worker_dir / "depth" / "build"
        assert (depth_dir / "a.txt").exists()
        assert not (depth_dir / "sub").exists()

        # preferLastChangedRev: trunk's last change, not the repository's newest revision
        repo.commit("elsewhere", {"branches/b.txt": "b\n"})
        result = succeeded(await running.build("last"))
        assert got(result) == trunk_last
        assert trunk_last != repo.head()

        # as Buildbot: a worker without svn is a setup error, EXCEPTION, saying so
        nosvn = await running.build("nosvn")
        assert nosvn.build.results == Results.EXCEPTION
        assert nosvn.logs[("svn", "err.text")] == "SVN is not installed on worker\n"


# -- username and password ------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Any:
    root = tmp_path / "served"
    root.mkdir()
    repo = SvnRepo(root / "project")
    repo.commit("layout", {"trunk/a.txt": "served\n"})
    server = SvnServe(root, {"alice": "s3cret-pw"})
    try:
        yield repo, server
    finally:
        server.stop()


@pytest.mark.parametrize("kind", [*KINDS, STOCK_PB])
async def test_password_reaches_svn_and_never_the_log(
    tmp_path: Path, kind: str, served: tuple[SvnRepo, SvnServe]
) -> None:
    repo, server = served
    url = f"{server.url('project')}/trunk"
    steps = {
        "auth": "steps.SVN(repourl=URL, username='alice', password=util.Secret('svnpw'))",
        "export": "steps.SVN(repourl=URL, mode='full', method='export', username='alice',"
        " password='s3cret-pw')",
        "wrong": "steps.SVN(repourl=URL, username='alice', password='wr0ng-pw')",
    }
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "svnpw").write_text("s3cret-pw")
    (secrets / "svnpw").chmod(0o600)
    body = builders(url, steps) + (
        f"c['secretsProviders'] = [secrets.SecretInAFile(dirname={str(secrets)!r})]\n"
    )
    async with running_master(tmp_path, body, worker=kind) as running:
        for name in ("auth", "auth", "export"):  # checkout, then update, then export
            result = succeeded(await running.build(name))
            assert got(result) == repo.head()
            stdio = result.logs[("svn", "stdio")]
            assert "s3cret-pw" not in stdio, name
            if kind == STOCK_PB:  # Buildbot's obfuscated word
                assert "--password XXXXXX" in stdio
            else:
                assert "--password-from-stdin" in stdio
        assert (running.worker_dir / "export" / "build" / "a.txt").read_text() == "served\n"
        result = await running.build("wrong")
        assert result.build.results == Results.FAILURE
        assert "wr0ng-pw" not in result.logs[("svn", "stdio")]


# -- unit parts -------------------------------------------------------------------------------


def errors_of(**kwargs: Any) -> list[str]:
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        SVN(**kwargs)
    return [e.message for e in errors.errors]


def test_config_errors_are_named() -> None:
    assert errors_of() == ["SVN: you must provide repourl"]
    assert errors_of(repourl="u", mode="update") == [
        "SVN: mode 'update' is not one of ['full', 'incremental']"
    ]
    assert errors_of(repourl="u", mode="full", method="wipe") == [
        "SVN: method 'wipe' is not one of ('clean', 'fresh', 'clobber', 'copy', 'export', None)"
    ]
    assert errors_of(repourl="u", extra_args="--quiet") == [
        "SVN: extra_args must be a list of strings"
    ]
    assert errors_of(repourl="u", keep_on_purge="x") == [
        "SVN: keep_on_purge must be a list of paths"
    ]
    assert errors_of(repourl="u", mode="full", method="export") == []


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("svn://Example.ORG:3690/repo/trunk/", "svn://example.org/repo/trunk"),
        ("http://example.org:80/a/./b//c/../d", "http://example.org/a/b/d"),
        ("https://user@host.:8443/r%7Ea/", "https://user@host:8443/r~a"),
        ("https://user:pw@HOST/x", "https://user:pw@host/x"),
        ("file:///tmp/a b/", "file:///tmp/a%20b"),
        ("svn://host/", "svn://host"),
        ("", ""),
        ("/", "/"),
    ],
)
def test_canonical_urls(url: str, canonical: str) -> None:
    assert canonical_svn_url(url) == canonical


def test_unversioned_files_from_status() -> None:
    status = """<?xml version="1.0" encoding="UTF-8"?>
<status><target path=".">
<entry path="junk.txt"><wc-status props="none" item="unversioned"></wc-status></entry>
<entry path="obj.o"><wc-status props="none" item="ignored"></wc-status></entry>
<entry path="gone.txt"><wc-status props="none" item="missing"></wc-status></entry>
<entry path="ext"><wc-status props="none" item="external"></wc-status></entry>
<entry path="keep.txt"><wc-status props="none" item="unversioned"></wc-status></entry>
<entry path=""><wc-status props="none" item="normal"></wc-status></entry>
</target></status>"""
    assert list(unversioned_files(status, ["keep.txt"])) == ["junk.txt", "obj.o"]


def test_compute_source_revision_is_the_highest_change() -> None:
    class C:
        def __init__(self, revision: str | None) -> None:
            self.revision = revision

    step = SVN(repourl="u")
    assert step.computeSourceRevision([C("9"), C("12"), C("3")]) == "12"
    assert step.computeSourceRevision([C("9"), C(None)]) is None
    assert step.computeSourceRevision([]) is None

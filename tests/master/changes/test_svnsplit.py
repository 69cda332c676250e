"""util.svn's split_file functions: a table of paths, and the same table through Buildbot 4.3's
own functions (run in the stock venv as a subprocess, never imported here)."""

from __future__ import annotations

import importlib
import json
import subprocess
import textwrap
from typing import Any

import pytest

from buildyard.master.changes.svnpoller import SVNPoller
from buildyard.master.config.compat import buildbot_imports
from buildyard.master.steps.source.svn import SVN
from buildyard.plugins import util
from buildyard.testing.stock import StockBuildbotMissing, buildbot_venv

PATHS = [
    "",
    "/",
    "trunk",
    "trunk/",
    "trunk/a.c",
    "trunk/src/",
    "trunk/src/a.c",
    "trunk//a.c",
    "branches",
    "branches/",
    "branches/1.5.x",
    "branches/1.5.x/",
    "branches/1.5.x/a.c",
    "branches/1.5.x/src/a.c",
    "branches//a.c",
    "tags/v1/a.c",
    "README",
    "proj",
    "proj/",
    "proj/trunk",
    "proj/trunk/",
    "proj/trunk/a.c",
    "proj/branches/dev/",
    "proj/branches/dev/src/a.c",
    "proj/branches/dev",
    "proj/tags/v1/a.c",
    "proj/other/trunk/a.c",
    "ünï/trunk/ç.c",
]

FUNCTIONS = ("split_file_alwaystrunk", "split_file_branches", "split_file_projects_branches")


def _ours(name: str, path: str) -> Any:
    result = getattr(util.svn, name)(path)
    # as JSON gives it back, for the comparison with Buildbot's
    return list(result) if isinstance(result, tuple) else result


def test_table() -> None:
    branches = util.svn.split_file_branches
    projects = util.svn.split_file_projects_branches
    assert util.svn.split_file_alwaystrunk("trunk/a.c") == {"path": "trunk/a.c"}
    assert branches("trunk/src/a.c") == (None, "src/a.c")
    assert branches("trunk/") == (None, "")
    assert branches("trunk") is None
    assert branches("branches/1.5.x/src/a.c") == ("branches/1.5.x", "src/a.c")
    assert branches("branches/1.5.x/") == ("branches/1.5.x", "")
    assert branches("branches/1.5.x") is None
    assert branches("tags/v1/a.c") is None
    assert branches("README") is None
    assert projects("proj/trunk/a.c") == {"project": "proj", "path": "a.c"}
    assert projects("proj/branches/dev/src/a.c") == {
        "project": "proj",
        "branch": "branches/dev",
        "path": "src/a.c",
    }
    assert projects("proj/tags/v1/a.c") is None
    assert projects("proj") is None
    assert projects("trunk/a.c") is None


def test_the_buildbot_modules_name_them() -> None:
    with buildbot_imports():
        module = importlib.import_module("buildbot.changes.svnpoller")
        for name in FUNCTIONS:
            assert getattr(module, name) is getattr(util.svn, name)
        assert module.SVNPoller is SVNPoller
        assert importlib.import_module("buildbot.steps.source.svn").SVN is SVN


@pytest.mark.timeout(120)
def test_same_results_as_buildbot() -> None:
    try:
        python = buildbot_venv() / "bin" / "python"
    except StockBuildbotMissing as exc:
        pytest.skip(str(exc))
    script = textwrap.dedent(
        """
        import json, sys
        from buildbot.changes import svnpoller
        paths, names = json.load(sys.stdin)
        json.dump({n: [getattr(svnpoller, n)(p) for p in paths] for n in names}, sys.stdout)
        """
    )
    done = subprocess.run(
        [str(python), "-c", script],
        input=json.dumps([PATHS, FUNCTIONS]),
        capture_output=True,
        text=True,
        check=True,
        timeout=100,
    )
    theirs = json.loads(done.stdout)
    for name in FUNCTIONS:
        ours = [_ours(name, path) for path in PATHS]
        assert ours == theirs[name], name

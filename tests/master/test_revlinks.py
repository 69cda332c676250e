"""util.RevlinkMatch and the default c['revlink'] (Buildbot's matchers), and the revlink a change
gets from it."""

from __future__ import annotations

import pytest

from buildyard.master.model.revlinks import (
    GitwebMatch,
    RevlinkMatch,
    RevlinkMultiplexer,
    default_revlink_matcher,
)
from buildyard.plugins import util


def test_revlink_match_expands_groups_then_the_revision() -> None:
    match = util.RevlinkMatch(
        [r"https://git.example.org/(?P<team>[^/]*)/(.*?)(?:\.git)?$", r"ssh://x/(.*)$"],
        r"https://view.example.org/\g<team>/\2/rev/%s",
    )
    assert isinstance(match, RevlinkMatch)
    assert (
        match("f00d", "https://git.example.org/core/lib.git")
        == "https://view.example.org/core/lib/rev/f00d"
    )
    assert match("f00d", "https://elsewhere.org/core/lib.git") is None
    # one pattern as a string; patterns match from the start of the address
    single = RevlinkMatch(r"git\.example\.org:(.*)", r"https://web/\1/%s")
    assert single("1", "git.example.org:lamp") == "https://web/lamp/1"
    assert single("1", "x-git.example.org:lamp") is None


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="repo_urls"):
        RevlinkMatch([3], "x")  # type: ignore[list-item]
    with pytest.raises(TypeError, match="revlink must be a string"):
        RevlinkMatch("x", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("repository", "link"),
    [
        ("https://github.com/octo/lamp.git", "https://github.com/octo/lamp/commit/R"),
        ("https://github.com/octo/lamp", "https://github.com/octo/lamp/commit/R"),
        ("git://github.com/octo/lamp.git", "https://github.com/octo/lamp/commit/R"),
        ("git@github.com:octo/lamp.git", "https://github.com/octo/lamp/commit/R"),
        ("ssh://git@github.com/octo/lamp.git", "https://github.com/octo/lamp/commit/R"),
        ("https://ann@bitbucket.org/octo/lamp.git", "https://bitbucket.org/octo/lamp/commits/R"),
        ("git@bitbucket.org:octo/lamp.git", "https://bitbucket.org/octo/lamp/commits/R"),
        (
            "git://lamp.git.sourceforge.net/gitroot/lamp/lamp",
            "http://lamp.git.sourceforge.net/git/gitweb.cgi?p=lamp/lamp;a=commit;h=R",
        ),
        ("ssh://ann@git.code.sf.net/p/lamp/code", "https://sourceforge.net/p/lamp/code/ci/R/"),
        ("https://gitlab.com/octo/lamp.git", None),
        ("/srv/git/lamp.git", None),
    ],
)
def test_default_matcher(repository: str, link: str | None) -> None:
    assert default_revlink_matcher("R", repository) == link


def test_gitweb_and_multiplexer() -> None:
    gitweb = GitwebMatch(r"git://git\.example\.org/(?P<repo>.*)$", "https://git.example.org/gw")
    both = RevlinkMultiplexer(gitweb, default_revlink_matcher)
    assert both("abc", "git://git.example.org/lamp.git") == (
        "https://git.example.org/gw?p=lamp.git;a=commit;h=abc"
    )
    assert both("abc", "git@github.com:o/r") == "https://github.com/o/r/commit/abc"
    assert both("abc", "nowhere") is None

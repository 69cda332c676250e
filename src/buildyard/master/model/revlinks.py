"""``util.RevlinkMatch`` and the revision links Buildbot makes by default.

``c['revlink']`` is a callable ``(revision, repository) -> url or None``; a change that arrives
without a ``revlink`` (from a poller, a hook, ``sendchange``) gets the one it returns. A
:class:`RevlinkMatch` tries its regular expressions on the repository address in turn; the first
that matches expands its groups (``\\1``, ``\\g<name>``) into the link template, whose ``%s`` is
then the revision. Without ``c['revlink']`` the master uses :data:`default_revlink_matcher`, as
Buildbot 4.3 does: links for GitHub, Bitbucket and SourceForge addresses, none for the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

__all__ = [
    "BitbucketRevlink",
    "GithubRevlink",
    "GitwebMatch",
    "RevlinkMatch",
    "RevlinkMultiplexer",
    "SourceforgeGitRevlink",
    "SourceforgeGitRevlink_AlluraPlatform",
    "default_revlink_matcher",
]


class RevlinkMatch:
    """Buildbot's ``util.RevlinkMatch(repo_urls, revlink)``: ``repo_urls`` one pattern or a
    list, matched from the start of the repository address; ``revlink`` the link template."""

    def __init__(self, repo_urls: str | Sequence[str], revlink: str) -> None:
        patterns = [repo_urls] if isinstance(repo_urls, str) else list(repo_urls)
        if not all(isinstance(p, str) for p in patterns):
            raise TypeError("RevlinkMatch: repo_urls must be a string or a list of strings")
        if not isinstance(revlink, str):
            raise TypeError("RevlinkMatch: revlink must be a string")
        self.repo_urls = [re.compile(p) for p in patterns]
        self.revlink = revlink

    def __call__(self, rev: str, repo: str) -> str | None:
        for pattern in self.repo_urls:
            found = pattern.match(repo)
            if found is not None:
                return found.expand(self.revlink) % rev
        return None

    def __repr__(self) -> str:
        return f"RevlinkMatch({[p.pattern for p in self.repo_urls]!r}, {self.revlink!r})"


class GitwebMatch(RevlinkMatch):
    """A gitweb installation: ``revlink`` is the address of its ``gitweb.cgi``; the patterns
    name the repository's path as the group ``repo``."""

    def __init__(self, repo_urls: str | Sequence[str], revlink: str) -> None:
        super().__init__(repo_urls, revlink + r"?p=\g<repo>;a=commit;h=%s")


class RevlinkMultiplexer:
    """The first link any of ``revlinks`` gives."""

    def __init__(self, *revlinks: Callable[[str, str], str | None]) -> None:
        self.revlinks = revlinks

    def __call__(self, rev: str, repo: str) -> str | None:
        for revlink in self.revlinks:
            url = revlink(rev, repo)
            if url:
                return url
        return None


_OWNER_REPO = r"([^/]*)/([^/]*?)(?:\.git)?$"

GithubRevlink = RevlinkMatch(
    [
        rf"https://github.com/{_OWNER_REPO}",
        rf"git://github.com/{_OWNER_REPO}",
        rf"git@github.com:{_OWNER_REPO}",
        rf"ssh://git@github.com/{_OWNER_REPO}",
    ],
    r"https://github.com/\1/\2/commit/%s",
)

BitbucketRevlink = RevlinkMatch(
    [rf"https://[^@]*@bitbucket.org/{_OWNER_REPO}", rf"git@bitbucket.org:{_OWNER_REPO}"],
    r"https://bitbucket.org/\1/\2/commits/%s",
)

SourceforgeGitRevlink = GitwebMatch(
    [
        r"^git://([^.]*).git.sourceforge.net/gitroot/(?P<repo>.*)$",
        r"[^@]*@([^.]*).git.sourceforge.net:gitroot/(?P<repo>.*)$",
        r"ssh://(?:[^@]*@)?([^.]*).git.sourceforge.net/gitroot/(?P<repo>.*)$",
    ],
    r"http://\1.git.sourceforge.net/git/gitweb.cgi",
)

SourceforgeGitRevlink_AlluraPlatform = RevlinkMatch(
    [
        r"git://git.code.sf.net/p/(?P<repo>.*)$",
        r"http://git.code.sf.net/p/(?P<repo>.*)$",
        r"ssh://(?:[^@]*@)?git.code.sf.net/p/(?P<repo>.*)$",
    ],
    r"https://sourceforge.net/p/\1/ci/%s/",
)

default_revlink_matcher = RevlinkMultiplexer(
    GithubRevlink, BitbucketRevlink, SourceforgeGitRevlink, SourceforgeGitRevlink_AlluraPlatform
)

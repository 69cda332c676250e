"""Codebases of a project, their branches and their commits (Buildbot's commit graph).

A commit names its first parent (``parent_commitid``); the graph is walked along it to find
where two commits' histories meet (:class:`CommonCommitInfo`).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Codebase:
    id: int
    projectid: int
    name: str
    slug: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CodebaseBranch:
    id: int
    codebaseid: int
    name: str
    # the branch's head; None until a commit is known (or after it is deleted)
    commitid: int | None
    last_timestamp: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CodebaseCommit:
    id: int
    codebaseid: int
    author: str
    committer: str | None
    comments: str
    when_timestamp: int
    revision: str
    parent_commitid: int | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CommonCommitInfo:
    """Where two commits' histories meet: ``common`` and the commit ids from it to each of the
    two, both ends included, oldest first."""

    common: int
    to1: tuple[int, ...]
    to2: tuple[int, ...]

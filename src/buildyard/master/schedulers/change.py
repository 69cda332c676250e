"""The change as master.cfg callables see it (``fileIsImportant``, ``filter_fn``, ``branch_fn``).

Schedulers receive a change as the body of its ``changes/<id>/new`` event (the API shape).
Buildbot hands users' functions a ``Change`` object instead, and configurations read its
attributes: ``change.files``, ``change.branch``, ``change.who``, ``change.comments``,
``change.properties.getProperty("x")``. :class:`ChangeView` is that object, read-only, built from
the event body.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from buildyard.master.model.properties import Properties

__all__ = ["ChangeView"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChangeView:
    """One change, with the attribute names of Buildbot's ``Change`` (``number``, ``who``,
    ``when``) and of its database model (``changeid``, ``author``, ``when_timestamp``)."""

    number: int
    who: str
    committer: str | None
    comments: str
    revision: str | None
    branch: str | None
    category: str | None
    revlink: str
    repository: str
    codebase: str
    project: str
    when: int | None
    # sorted, as Buildbot keeps them
    files: list[str]
    properties: Properties
    sourcestampid: int | None
    parent_changeids: tuple[int, ...] = ()

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> ChangeView:
        """From a change in its API shape (the body of ``changes/<id>/new``)."""
        stamp = body.get("sourcestamp")
        return cls(
            number=int(body["changeid"]),
            who=body.get("author") or "",
            committer=body.get("committer"),
            comments=body.get("comments") or "",
            revision=body.get("revision"),
            branch=body.get("branch"),
            category=body.get("category"),
            revlink=body.get("revlink") or "",
            repository=body.get("repository") or "",
            codebase=body.get("codebase") or "",
            project=body.get("project") or "",
            when=body.get("when_timestamp"),
            files=sorted(body.get("files") or ()),
            properties=Properties.from_dict(
                {name: (pair[0], pair[1]) for name, pair in (body.get("properties") or {}).items()}
            ),
            sourcestampid=stamp.get("ssid") if isinstance(stamp, Mapping) else None,
            parent_changeids=tuple(body.get("parent_changeids") or ()),
        )

    # the database model's names, which ``priority`` callables receive in Buildbot

    @property
    def changeid(self) -> int:
        return self.number

    @property
    def author(self) -> str:
        return self.who

    @property
    def when_timestamp(self) -> int | None:
        return self.when

    def getShortAuthor(self) -> str:
        return self.who

    def getTime(self) -> str:
        if not self.when:
            return "?"
        return time.strftime("%a %d %b %Y %H:%M:%S", time.localtime(self.when))

    def asDict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "branch": self.branch,
            "category": self.category,
            "who": self.who,
            "committer": self.committer,
            "comments": self.comments,
            "revision": self.revision,
            "rev": self.revision,
            "when": self.when,
            "at": self.getTime(),
            "files": [{"name": f} for f in self.files],
            "revlink": self.revlink,
            "properties": self.properties.asList(),
            "repository": self.repository,
            "codebase": self.codebase,
            "project": self.project,
        }

    def __str__(self) -> str:
        return (
            f"Change(revision={self.revision!r}, who={self.who!r}, branch={self.branch!r}, "
            f"comments={self.comments!r}, when={self.when!r}, category={self.category!r}, "
            f"project={self.project!r}, repository={self.repository!r}, "
            f"codebase={self.codebase!r})"
        )

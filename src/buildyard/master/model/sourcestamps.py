"""Source stamps: which code (branch, revision, repository, optional patch) a build uses."""

from __future__ import annotations

import dataclasses
from typing import NotRequired, TypedDict


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Patch:
    id: int
    body: bytes
    level: int
    author: str
    comment: str
    # directory the patch applies in, relative to the checkout
    subdir: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SourceStamp:
    id: int
    branch: str | None
    revision: str | None
    repository: str
    codebase: str
    project: str
    # epoch seconds
    created_at: int
    patch: Patch | None = None


class SourceStampSpec(TypedDict):
    """The arguments of ``find_sourcestamp_id``, for callers that describe a stamp by value."""

    branch: str | None
    revision: str | None
    repository: str
    project: str
    codebase: str
    patch_body: NotRequired[bytes | str | None]
    patch_level: NotRequired[int | None]
    patch_author: NotRequired[str | None]
    patch_comment: NotRequired[str | None]
    patch_subdir: NotRequired[str | None]

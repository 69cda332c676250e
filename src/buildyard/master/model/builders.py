"""A builder as the store knows it: its name, description, project, tags and masters."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Builder:
    id: int
    name: str
    # the masters this builder is configured on, ascending
    masterids: tuple[int, ...] = ()
    description: str | None = None
    # how description is written ("markdown" or None), and its rendering
    description_format: str | None = None
    description_html: str | None = None
    projectid: int | None = None
    # ascending by name
    tags: tuple[str, ...] = ()

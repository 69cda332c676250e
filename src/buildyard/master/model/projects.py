"""A project: a named group of builders, shown together in the web UI."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Project:
    id: int
    name: str
    # identifier (<= 50 characters) used in URLs
    slug: str
    description: str | None = None
    description_format: str | None = None
    description_html: str | None = None

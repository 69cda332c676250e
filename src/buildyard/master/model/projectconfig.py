"""``util.Project`` and ``util.Codebase``: what ``c['projects']`` and ``c['codebases']`` hold.

A project groups builders (``BuilderConfig(project=...)``) and codebases; the configuration gives
it a slug (the name unless given) and a description, plain or ``"markdown"``. A codebase names the
project it belongs to; a change source given one (``GitPoller(codebase=util.Codebase(...))``)
records the commits it finds in it and moves the codebase's branches to them, which the
``codebases``, ``commits`` and ``branches`` REST resources serve.

Both are plain values: equal when their arguments are, so a reconfiguration that repeats them
changes nothing. Bad arguments are configuration errors naming the argument.
"""

from __future__ import annotations

from typing import Any

from buildyard.common.errors import config_error

__all__ = ["Codebase", "Project"]

# the width of the slug columns of the projects and codebases tables
SLUG_LENGTH = 50


def _text(owner: str, argument: str, value: Any, *, optional: bool = False) -> str | None:
    if isinstance(value, str) or (optional and value is None):
        return value
    kind = "a string or None" if optional else "a string"
    config_error(f"{owner}: {argument} must be {kind}, not {type(value).__name__} {value!r}")
    return None if optional else ""


def _slug(owner: str, value: str | None) -> None:
    if value is not None and not value:
        config_error(f"{owner}: slug must not be empty")
    elif value is not None and len(value) > SLUG_LENGTH:
        config_error(f"{owner}: slug {value!r} is longer than {SLUG_LENGTH} characters")


class Project:
    """Buildbot's ``util.Project(name, slug=None, description=None, description_format=None)``."""

    def __init__(
        self,
        name: str,
        slug: str | None = None,
        description: str | None = None,
        description_format: str | None = None,
    ) -> None:
        self.name: str = _text("Project", "name", name) or ""
        owner = f"Project {self.name!r}"
        if not self.name:
            config_error("Project: name must not be empty")
        self.slug: str = _text(owner, "slug", self.name if slug is None else slug) or ""
        _slug(owner, self.slug)
        self.description = _text(owner, "description", description, optional=True)
        self.description_format = _text(
            owner, "description_format", description_format, optional=True
        )
        if self.description_format not in (None, "markdown"):
            config_error(
                f'{owner}: description_format must be None or "markdown", '
                f"not {self.description_format!r}"
            )
            self.description_format = None

    def _key(self) -> tuple[Any, ...]:
        return (self.name, self.slug, self.description, self.description_format)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Project(name={self.name!r}, slug={self.slug!r})"


class Codebase:
    """Buildbot's ``util.Codebase(name, project, slug=None)``; ``project`` is a project's name
    from ``c['projects']``."""

    def __init__(self, name: str, project: str, slug: str | None = None) -> None:
        self.name: str = _text("Codebase", "name", name) or ""
        owner = f"Codebase {self.name!r}"
        if not self.name:
            config_error("Codebase: name must not be empty")
        self.project: str = _text(owner, "project", project) or ""
        self.slug: str = _text(owner, "slug", self.name if slug is None else slug) or ""
        _slug(owner, self.slug)

    def _key(self) -> tuple[Any, ...]:
        return (self.name, self.slug, self.project)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Codebase(name={self.name!r}, project={self.project!r}, slug={self.slug!r})"


def markdown_html(text: str) -> str | None:
    """``text`` rendered from Markdown to HTML, as Buildbot renders a ``"markdown"``
    description; None when the ``markdown`` package is not installed."""
    try:
        import markdown  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return None
    return str(markdown.markdown(text))

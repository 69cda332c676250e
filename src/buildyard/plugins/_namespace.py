"""What the plugin namespaces share: the issue numbers of what is not built yet, the stand-in
classes for those names, and the error for a name nobody knows."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from buildyard.common.config_object import not_implemented

# The buildyard issues that bring the names not implemented yet.
WORKERS = 3  # worker kinds other than Worker (latent, local), their protocol
PIPELINE = 4  # changes, schedulers, build requests, steps, properties, locks, secrets
WWW = 5  # REST, www, authentication and authorization
REPORTING = 14  # reporters, message formatters, services


def placeholders(namespace: str, issues: Mapping[str, int]) -> dict[str, type]:
    """A stand-in class for each ``name: issue`` of ``issues``, named ``namespace.name``."""
    return {name: not_implemented(f"{namespace}.{name}", issue) for name, issue in issues.items()}


def unknown_name(namespace: str, name: str, known: Iterable[str]) -> AttributeError:
    """The error for ``namespace.name`` when neither Buildbot nor buildyard has that name."""
    if name.startswith("__") and name.endswith("__"):
        return AttributeError(name)
    candidates = {k.lower(): k for k in known}
    close = [candidates[c] for c in difflib.get_close_matches(name.lower(), candidates, n=3)]
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return AttributeError(
        f"{namespace} has no {name!r} (neither Buildbot nor buildyard knows it){hint}"
    )


class Namespace:
    """A dotted group of names inside a namespace, such as ``util.svn``."""

    def __init__(self, name: str, members: Mapping[str, object]) -> None:
        self._name = name
        self._members = dict(members)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._members[name]
        except KeyError:
            raise unknown_name(self._name, name, self._members) from None

    def __dir__(self) -> list[str]:
        return sorted(self._members)

    def __repr__(self) -> str:
        return f"<namespace {self._name}>"

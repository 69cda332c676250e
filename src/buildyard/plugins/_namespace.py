"""What the plugin namespaces share: the features that are not built yet, the stand-in classes
for their names, and the error for a name nobody knows."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from buildyard.common.config_object import not_implemented

# The missing features the names not implemented yet belong to, as error messages name them.
WORKERS = "latent workers"
STEPS = "steps"
SCHEDULERS = "schedulers"
CHANGES = "change sources"
SECRETS = "secret providers"
HELPERS = "build configuration helpers"  # util's force parameters, filters, factories, ...
WWW = "web authentication, users and manholes"
REPORTING = "reporters"


def placeholders(namespace: str, features: Mapping[str, str]) -> dict[str, type]:
    """A stand-in class for each ``name: feature`` of ``features``, named ``namespace.name``."""
    return {
        name: not_implemented(f"{namespace}.{name}", feature) for name, feature in features.items()
    }


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

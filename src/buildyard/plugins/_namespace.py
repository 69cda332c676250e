"""What the plugin namespaces share: the features that are not built yet, the stand-in classes
for their names, the error for a name nobody knows, and :class:`LazyNames`, which resolves a
namespace's names on first use."""

from __future__ import annotations

import difflib
import importlib
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


class LazyNames:
    """The names of one namespace, each made on first use (PEP 562's module ``__getattr__``).

    ``sources`` maps each name buildyard implements to where it lives, ``"module"`` (the same
    name there) or ``"module:attribute"``; every other name of ``known`` is a stand-in of
    ``features`` (one feature for the namespace, or one per name). Importing the namespace
    therefore imports none of the steps, reporters or workers it names: a master pays for the
    ones its master.cfg uses. What a name resolved to is kept in ``store`` (the module's
    globals), so it is the same object every time and later look-ups are plain ones.
    """

    def __init__(
        self,
        namespace: str,
        *,
        store: dict[str, Any],
        known: Iterable[str],
        sources: Mapping[str, str],
        features: str | Mapping[str, str],
    ) -> None:
        self.namespace = namespace
        self.known = tuple(dict.fromkeys([*sources, *known]))
        self.sources = sources
        self._store = store
        self._features = features

    def resolve(self, name: str) -> Any:
        """The object ``namespace.name``; AttributeError naming the closest known names."""
        source = self.sources.get(name)
        if source is not None:
            module_name, _, attribute = source.partition(":")
            value = getattr(importlib.import_module(module_name), attribute or name)
        elif name in self.known:
            features = self._features
            feature = (
                features
                if isinstance(features, str)
                else features.get(name, f"{self.namespace}.{name}")
            )
            value = not_implemented(f"{self.namespace}.{name}", feature)
        else:
            raise unknown_name(self.namespace, name, self.known)
        self._store[name] = value
        return value

    def names(self) -> list[str]:
        """Every name of the namespace, for ``dir()``."""
        return sorted(self.known)

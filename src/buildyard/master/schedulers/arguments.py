"""The arguments every Buildbot scheduler takes, checked: ``name``, ``builderNames``,
``properties``, ``codebases``, ``priority``.

:class:`SchedulerBase` is the base of the master.cfg classes (``SingleBranchScheduler``,
``Nightly``, ``ForceScheduler``...); each calls :meth:`SchedulerBase._common` from its
constructor. Mistakes go to :func:`~buildyard.common.errors.config_error` at the master.cfg line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from buildyard.common.config_object import is_placeholder
from buildyard.common.errors import config_error
from buildyard.master.model.properties import is_renderable
from buildyard.master.schedulers.base import SchedulerConfig

__all__ = ["SchedulerBase"]

_CODEBASE_KEYS = frozenset({"branch", "repository", "revision"})


def _is_json(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


class SchedulerBase(SchedulerConfig):
    """The arguments common to Buildbot's schedulers, checked; subclasses call
    :meth:`_common` from their constructor."""

    #: Buildbot's class (``module.Class``); the bare class name keys the scheduler's state
    buildbot_class: ClassVar[str | None] = None

    #: the builder names given as strings (what cross-reference checks can see)
    builder_names: tuple[str, ...]
    #: builderNames as given, renderables included; rendered for each buildset
    builder_names_to_render: Any
    #: the ``properties=`` of master.cfg (the ``scheduler`` property is added to them)
    scheduler_properties: dict[str, Any]
    codebases: dict[str, dict[str, Any]]
    priority: int | Callable[..., Any] | None
    reason: str
    create_absolute_sourcestamps: bool = False

    def _common(
        self,
        name: object,
        builderNames: object,
        properties: object = None,
        codebases: object = None,
        priority: object = None,
    ) -> str:
        """Check and keep the common arguments; returns the label for error messages."""
        kind = type(self).__name__
        if not isinstance(name, str) or not name:
            config_error(f"{kind}: name must be a non-empty string, not {name!r}")
            name = str(name or "")
        assert isinstance(name, str)
        self.name = name
        label = f"{kind} {name!r}"

        self.builder_names = ()
        self.builder_names_to_render = ()
        if is_renderable(builderNames):
            self.builder_names_to_render = builderNames
        elif isinstance(builderNames, list | tuple) and all(
            isinstance(b, str) or is_renderable(b) for b in builderNames
        ):
            self.builder_names = tuple(b for b in builderNames if isinstance(b, str))
            self.builder_names_to_render = tuple(builderNames)
        else:
            config_error(
                f"{label}: builderNames must be a list of builder names (strings or "
                f"renderables) or a renderable, not {builderNames!r}"
            )

        self.scheduler_properties = {}
        if properties is not None and not isinstance(properties, Mapping):
            config_error(f"{label}: properties must be a dictionary, not {properties!r}")
        elif properties is not None:
            for key, value in properties.items():
                if not isinstance(key, str):
                    config_error(f"{label}: property name {key!r} is not a string")
                elif not (is_placeholder(value) or is_renderable(value) or _is_json(value)):
                    config_error(
                        f"{label}: property {key!r} must be a JSON value (string, number, "
                        f"boolean, list or dict) or a renderable, not {type(value).__name__}"
                    )
                else:
                    self.scheduler_properties[key] = value

        self.codebases = self._codebases(label, codebases)

        self.priority = None
        if priority is not None and (
            isinstance(priority, bool) or not (isinstance(priority, int) or callable(priority))
        ):
            config_error(
                f"{label}: priority must be an integer or a function, not {type(priority).__name__}"
            )
        else:
            self.priority = priority
        return label

    @staticmethod
    def _codebases(label: str, codebases: object) -> dict[str, dict[str, Any]]:
        if codebases is None:
            return {"": {}}
        if isinstance(codebases, list | tuple):
            if not all(isinstance(c, str) for c in codebases):
                config_error(f"{label}: codebases given as a list must be codebase names")
            return {str(c): {} for c in codebases}
        if not isinstance(codebases, Mapping):
            config_error(f"{label}: codebases must be a dict of dicts, or a list of strings")
            return {"": {}}
        out: dict[str, dict[str, Any]] = {}
        for codebase, attrs in codebases.items():
            if not isinstance(attrs, Mapping):
                config_error(
                    f"{label}: codebases must be a dict of dicts; codebase {codebase!r} has "
                    f"{attrs!r}"
                )
                continue
            unknown = sorted(set(attrs) - _CODEBASE_KEYS)
            if unknown:
                config_error(
                    f"{label}: unknown codebase keys {', '.join(map(str, unknown))} for codebase "
                    f"{codebase!r} (known: branch, repository, revision)"
                )
            out[str(codebase)] = dict(attrs)
        return out

    @property
    def builderNames(self) -> list[str]:
        """Buildbot's name for :attr:`builder_names` (configs read it); renderables left out."""
        return list(self.builder_names)

    def listBuilderNames(self) -> list[str]:
        return list(self.builder_names)

    @classmethod
    def state_class_name(cls) -> str:
        """The class name of the scheduler's state object (``objects.class_name``), as Buildbot
        names it: the bare class name (``Nightly``, or a subclass's own name), so a database
        adopted from Buildbot keeps a Nightly's last build time."""
        own = cls.__dict__.get("buildbot_class")
        return own.rpartition(".")[2] if isinstance(own, str) else cls.__name__

    def properties_with_scheduler(self) -> dict[str, tuple[Any, str]]:
        """The buildset properties the scheduler adds: its own, and ``scheduler`` = its name."""
        props = {k: (v, "Scheduler") for k, v in self.scheduler_properties.items()}
        props["scheduler"] = (self.name, "Scheduler")
        return props

"""BuilderConfig: one builder as master.cfg declares it.

``util.BuilderConfig(name="runtests", workernames=["w1"], factory=factory)`` takes Buildbot's
keywords and checks each of them where it is built (the errors point at that master.cfg line);
the attributes are snake_case. Whether the named workers exist is checked later, across the
whole configuration, by :mod:`buildyard.master.config`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from buildyard.common.config_object import (
    ConfigObject,
    is_placeholder,
    report_if_placeholder,
)
from buildyard.common.errors import config_error
from buildyard.master.builds.factory import BuildFactory

__all__ = ["BuilderConfig"]

_PROPERTY_NAME_LENGTH = 256
# names starting with "_" that are allowed all the same: util.JanitorConfigurator's builder
RESERVED_UNDERSCORE_NAMES = ("__Janitor",)
# Characters Buildbot replaces by "_" when it derives a builder's directory from its name.
_UNSAFE_IN_DIRECTORY = str.maketrans(dict.fromkeys("\t !#$%&'()*+,./:;<=>?@[\\]^{|}~", "_"))


def _directory_for(name: str) -> str:
    safe = name.translate(_UNSAFE_IN_DIRECTORY)
    return name if safe == name else safe  # the name itself when it is safe: one string


class BuilderConfig(ConfigObject):
    """A builder: which ``factory`` builds run and which workers may run them.

    ``workernames`` (a name or a list) plus ``workername`` give the workers. ``builddir`` (on the
    master) defaults to the name with unsafe characters replaced, ``workerbuilddir`` to
    ``builddir``. ``nextWorker``, ``nextBuild``, ``canStartBuild`` and ``do_build_if`` are
    callables; ``collapseRequests`` is a bool or a callable; ``description_format`` is None or
    ``"markdown"``.
    """

    def __init__(  # noqa: PLR0917 - Buildbot's keywords, checked one by one
        self,
        name: str | None = None,
        workername: str | None = None,
        workernames: str | Sequence[str] | None = None,
        builddir: str | None = None,
        workerbuilddir: str | None = None,
        factory: object = None,
        tags: Sequence[str] | None = None,
        nextWorker: Callable[..., object] | None = None,
        nextBuild: Callable[..., object] | None = None,
        locks: Sequence[object] | None = None,
        env: Mapping[str, object] | None = None,
        properties: Mapping[str, object] | None = None,
        collapseRequests: bool | Callable[..., object] | None = None,
        description: str | None = None,
        description_format: str | None = None,
        canStartBuild: Callable[..., object] | None = None,
        defaultProperties: Mapping[str, object] | None = None,
        project: str | None = None,
        do_build_if: Callable[..., object] | None = None,
    ) -> None:
        label = self._check_name(name)
        self.name: str = name if isinstance(name, str) else "<unknown>"

        self.project = self._optional_str(label, "project", project)

        if factory is None:
            config_error(f"{label}: has no factory")
        elif not isinstance(factory, BuildFactory) and not is_placeholder(factory):
            config_error(f"{label}: factory is not a BuildFactory instance")
        self.factory = factory

        self.workernames: tuple[str, ...] = self._workernames(label, workername, workernames)

        if builddir is None:
            builddir = _directory_for(self.name)
        self.builddir: str = builddir
        self.workerbuilddir: str = builddir if workerbuilddir is None else workerbuilddir

        self.tags: tuple[str, ...] = self._tags(label, tags)

        self.next_worker = self._callable(label, "nextWorker", nextWorker)
        self.next_build = self._callable(label, "nextBuild", nextBuild)
        self.can_start_build = self._callable(label, "canStartBuild", canStartBuild)
        self.do_build_if = self._callable(label, "do_build_if", do_build_if)

        self.locks: tuple[object, ...] = ()
        if locks:
            if isinstance(locks, list | tuple):
                self.locks = tuple(locks)
            elif is_placeholder(locks):
                self.locks = (locks,)
            else:
                config_error(f"{label}: locks must be a list")

        self.env: dict[str, object] = self._mapping(label, "env", env)
        self.properties = self._mapping(label, "properties", properties, property_names=True)
        self.default_properties = self._mapping(
            label, "defaultProperties", defaultProperties, property_names=True
        )

        report_if_placeholder(collapseRequests)
        if collapseRequests is not None and not isinstance(collapseRequests, bool):
            self._callable(label, "collapseRequests", collapseRequests)
        self.collapse_requests = collapseRequests

        self.description = self._optional_str(label, "description", description)
        fmt = self._optional_str(label, "description_format", description_format)
        if fmt not in (None, "markdown"):
            config_error(f'{label}: description_format must be None or "markdown"')
            fmt = None
        self.description_format: str | None = fmt

    @staticmethod
    def _check_name(name: object) -> str:
        if not name or not isinstance(name, str):
            config_error("builder's name is required (a non-empty string)")
            return "builder"
        if name.startswith("_") and name not in RESERVED_UNDERSCORE_NAMES:
            config_error(f"builder names must not start with an underscore: {name!r}")
        return f"builder {name!r}"

    @staticmethod
    def _workernames(label: str, workername: object, workernames: object) -> tuple[str, ...]:
        names: list[object] = []
        if isinstance(workernames, str):
            names.append(workernames)
        elif isinstance(workernames, list | tuple):
            names.extend(workernames)
        elif workernames:
            config_error(f"{label}: workernames must be a list or a string")
        if workername:
            if isinstance(workername, str):
                names.append(workername)
            else:
                config_error(f"{label}: workername must be a string, not {workername!r}")
        for worker in names:
            if not isinstance(worker, str):
                config_error(f"{label}: worker name {worker!r} is not a string")
        if not names:
            config_error(f"{label}: at least one workername is required")
        return tuple(n for n in names if isinstance(n, str))

    @staticmethod
    def _tags(label: str, tags: object) -> tuple[str, ...]:
        if not tags:
            return ()
        if not isinstance(tags, list | tuple):
            config_error(f"{label}: tags must be a list")
            return ()
        if any(not isinstance(tag, str) for tag in tags):
            config_error(f"{label}: tags list contains something that is not a string")
        duplicates = sorted({t for t in tags if isinstance(t, str) and tags.count(t) > 1})
        if duplicates:
            config_error(f"{label}: tags list contains duplicate tags: {' '.join(duplicates)}")
        return tuple(dict.fromkeys(t for t in tags if isinstance(t, str)))

    @staticmethod
    def _callable(label: str, keyword: str, value: object) -> Callable[..., object] | None:
        if value is None:
            return None
        report_if_placeholder(value)
        if not callable(value):
            config_error(f"{label}: {keyword} must be a callable")
            return None
        return value

    @staticmethod
    def _mapping(
        label: str, keyword: str, value: object, *, property_names: bool = False
    ) -> dict[str, object]:
        if value is None:
            # a dict of its own, as Buildbot's: master.cfg may fill it after the builder is made
            return {}
        if not isinstance(value, Mapping):
            config_error(f"{label}: {keyword} must be a dictionary")
            return {}
        for key in value:
            if not isinstance(key, str):
                config_error(f"{label}: {keyword} key {key!r} is not a string")
            elif property_names and len(key) > _PROPERTY_NAME_LENGTH:
                config_error(
                    f"{label}: {keyword} name {key[:40]!r}... is longer than "
                    f"{_PROPERTY_NAME_LENGTH} characters"
                )
        return dict(value)

    @staticmethod
    def _optional_str(label: str, keyword: str, value: object) -> str | None:
        if value is None or isinstance(value, str):
            return value
        config_error(f"{label}: {keyword} must be a string or None")
        return None

"""What a running step sees of its build: the build's ids, properties, worker and writer."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buildyard.common.awaitables import deferred_compatible
from buildyard.master.data.updates import Updates
from buildyard.master.logs.writer import LogLimits
from buildyard.master.model.properties import Properties, render
from buildyard.master.secrets.providers import lookup
from buildyard.master.steps.locks import LockRegistry
from buildyard.master.workers.connection import WorkerConnection

if TYPE_CHECKING:
    from buildyard.master.steps.base import BuildStep


@dataclasses.dataclass(kw_only=True, eq=False)
class BuildRuntime:
    updates: Updates
    buildid: int
    number: int
    builderid: int
    builder_name: str
    properties: Properties
    conn: WorkerConnection
    # the worker's configuration object (util.Worker)
    worker: Any
    # the builder's directory on the worker (the base of relative paths)
    builder_dir: str
    # where steps run by default, relative to builder_dir
    workdir: str = "build"
    env: dict[str, Any] = dataclasses.field(default_factory=dict)
    log_limits: LogLimits = dataclasses.field(default_factory=LogLimits)
    current_step: BuildStep | None = None
    # this master's real locks
    locks: LockRegistry = dataclasses.field(default_factory=LockRegistry)
    # the build object itself, for steps that reach further (addStepsAfterCurrentStep)
    build: Any = None
    # the master's base directory: where relative master paths (FileUpload's masterdest) lead
    master_basedir: Path | None = None
    # the master's schedulers by name (for Trigger); None outside a master
    schedulers: Callable[[str], Any] | None = None
    # cancels a build request, (brid, reason) -> done (an interrupted Trigger's requests)
    cancel_buildrequest: Callable[[int, str], Awaitable[bool]] | None = None
    # c['secretsProviders']
    secrets_providers: Sequence[Any] = ()
    # the buildset's source stamps (model SourceStamp objects)
    sourcestamps: list[Any] = dataclasses.field(default_factory=list)

    # -- Buildbot's Build API, which step code calls as ``self.build.<method>`` ----------------

    def getProperties(self) -> Properties:
        return self.properties

    def getProperty(self, name: str, default: Any = None) -> Any:
        return self.properties.getProperty(name, default)

    def setProperty(self, name: str, value: Any, source: str, runtime: bool = True) -> None:
        self.properties.setProperty(name, value, source, runtime=runtime)

    def hasProperty(self, name: str) -> bool:
        return bool(self.properties.hasProperty(name))

    @deferred_compatible
    async def render(self, value: Any) -> Any:
        return await render(value, self.properties)

    # -- what rendering asks of the build (model.properties.RenderContext) --------------------

    def sourcestamp(self, codebase: str) -> Mapping[str, Any] | None:
        stamp = self.getSourceStamp(codebase)
        if stamp is None:
            return None
        return {
            "repository": stamp.repository,
            "branch": stamp.branch,
            "revision": stamp.revision,
            "project": stamp.project,
            "codebase": stamp.codebase,
        }

    @property
    def worker_info(self) -> Mapping[str, Any]:
        return {k: v for k, v in self.conn.info.items() if k != "environ"}

    async def secret(self, name: str) -> str | None:
        value = await lookup(self.secrets_providers, name)
        if value is not None:
            # hidden from now on wherever the master stores or shows text, before any use
            self.updates.redactor.add(value, name)
        return value

    def use_secret(self, value: str, name: str) -> None:
        """Buildbot's ``useSecret``: hide ``value`` as ``<name>`` (custom renderables)."""
        self.updates.redactor.add(value, name)

    def getAllSourceStamps(self) -> list[Any]:
        return list(self.sourcestamps)

    def getSourceStamp(self, codebase: str = "") -> Any:
        for stamp in self.sourcestamps:
            if stamp.codebase == codebase:
                return stamp
        return None

    @property
    def workername(self) -> str:
        return self.conn.name

    def addStepsAfterCurrentStep(self, steps: list[Any]) -> None:
        self.build.addStepsAfterCurrentStep(steps)

    def addStepsAfterLastStep(self, steps: list[Any]) -> None:
        self.build.addStepsAfterLastStep(steps)

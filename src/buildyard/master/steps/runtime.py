"""What a running step sees of its build: the build's ids, properties, worker and writer."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from buildyard.master.data.updates import Updates
from buildyard.master.logs.writer import LogLimits
from buildyard.master.model.properties import Properties
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

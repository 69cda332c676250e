"""The steps of ``util.JanitorConfigurator``'s builder: they run on the master, against the
database, and need nothing from the worker.

``LogChunksJanitor(logHorizon)`` deletes the lines of logs whose step started longer ago than
``logHorizon`` (a ``datetime.timedelta``); the logs stay, with type "d". ``BuildDataJanitor(
build_data_horizon)`` deletes the data of builds that completed longer ago than that. Both work
in bounded batches, each its own transaction (see ``LogsRepository.delete_old_logs``), so
several masters running them at once only find less to do.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, ClassVar

from buildyard.common.errors import config_error
from buildyard.master.model.results import Results
from buildyard.master.steps.base import BuildStep, _renderable

__all__ = ["BuildDataJanitor", "LogChunksJanitor"]


def _seconds(step: str, name: str, value: Any) -> float:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    raise ValueError(f"{step}: {name} must be a datetime.timedelta, not {value!r}")


def _check(step: str, name: str, value: Any) -> None:
    if not isinstance(value, datetime.timedelta) and not _renderable(value):
        config_error(f"{step}: {name} must be a datetime.timedelta, not {value!r}")


class LogChunksJanitor(BuildStep):
    name = "LogChunksJanitor"
    renderables: ClassVar[Sequence[str]] = (*BuildStep.renderables, "logHorizon")

    def __init__(self, logHorizon: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check(self.name, "logHorizon", logHorizon)
        self.logHorizon = logHorizon

    async def run(self) -> int:
        horizon = _seconds(self.name, "logHorizon", self.logHorizon)
        assert self.build is not None
        deleted = await self.build.updates.delete_old_logs(horizon)
        self.descriptionDone = ["deleted", str(deleted), "logchunks"]
        return int(Results.SUCCESS)


class BuildDataJanitor(BuildStep):
    name = "BuildDataJanitor"
    renderables: ClassVar[Sequence[str]] = (*BuildStep.renderables, "build_data_horizon")

    def __init__(self, build_data_horizon: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check(self.name, "build_data_horizon", build_data_horizon)
        self.build_data_horizon = build_data_horizon

    async def run(self) -> int:
        horizon = _seconds(self.name, "build_data_horizon", self.build_data_horizon)
        assert self.build is not None
        deleted = await self.build.updates.delete_old_build_data(horizon)
        self.descriptionDone = ["deleted", str(deleted), "build data key-value pairs"]
        return int(Results.SUCCESS)

"""``util.JanitorConfigurator``: Buildbot's housekeeping of old logs and build data, as a
builder that runs on the master.

``JanitorConfigurator(logHorizon=None, hour=0, build_data_horizon=None, **kwargs)`` in
``c['configurators']`` adds, when at least one horizon is given:

- a builder ``__Janitor`` whose steps are ``LogChunksJanitor(logHorizon)`` and
  ``BuildDataJanitor(build_data_horizon)`` (those whose horizon is given; see
  :mod:`buildyard.master.steps.janitor`), on a ``LocalWorker("__Janitor")``;
- a ``Nightly`` scheduler ``__Janitor`` at ``hour`` (``minute``, ``dayOfMonth``, ``month`` and
  ``dayOfWeek`` from ``kwargs``, else Nightly's defaults), and a ``ForceScheduler``
  ``__Janitor_force`` to run it by hand.

With several masters on one database each may run it: the deletions are idempotent batches.
"""

from __future__ import annotations

import datetime
from typing import Any

from buildyard.common.errors import config_error, config_warning
from buildyard.master.builds.builder import BuilderConfig
from buildyard.master.builds.factory import BuildFactory
from buildyard.master.schedulers.forced import ForceScheduler
from buildyard.master.schedulers.timed import Nightly
from buildyard.master.steps.janitor import BuildDataJanitor, LogChunksJanitor
from buildyard.master.workers.config import LocalWorker

__all__ = ["JANITOR_NAME", "BuildDataJanitor", "JanitorConfigurator", "LogChunksJanitor"]

#: the name of the builder, worker and nightly scheduler (Buildbot's)
JANITOR_NAME = "__Janitor"
_NIGHTLY_KEYS = ("minute", "dayOfMonth", "month", "dayOfWeek")


class JanitorConfigurator:
    def __init__(
        self,
        logHorizon: Any = None,  # noqa: N803 (Buildbot's names)
        hour: Any = 0,
        build_data_horizon: Any = None,
        **kwargs: Any,
    ) -> None:
        for name, value in (("logHorizon", logHorizon), ("build_data_horizon", build_data_horizon)):
            if value is not None and not isinstance(value, datetime.timedelta):
                config_error(
                    f"JanitorConfigurator: {name} must be a datetime.timedelta, not {value!r}"
                )
        ignored = sorted(k for k in kwargs if k not in _NIGHTLY_KEYS)
        if ignored:
            # Buildbot accepts and ignores them too; here they are at least named
            config_warning(
                f"JanitorConfigurator: {', '.join(ignored)} has no effect (only "
                f"{', '.join(_NIGHTLY_KEYS)} are passed to its Nightly scheduler)"
            )
        self.logHorizon = logHorizon
        self.build_data_horizon = build_data_horizon
        self.hour = hour
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return (
            f"JanitorConfigurator(logHorizon={self.logHorizon!r}, "
            f"build_data_horizon={self.build_data_horizon!r}, hour={self.hour!r})"
        )

    def configure(self, config_dict: dict[str, Any]) -> None:
        steps: list[Any] = []
        if self.logHorizon is not None:
            steps.append(LogChunksJanitor(logHorizon=self.logHorizon))
        if self.build_data_horizon is not None:
            steps.append(BuildDataJanitor(build_data_horizon=self.build_data_horizon))
        if not steps:
            return
        nightly = {k: self.kwargs[k] for k in _NIGHTLY_KEYS if k in self.kwargs}
        schedulers = config_dict.setdefault("schedulers", [])
        schedulers.append(
            Nightly(name=JANITOR_NAME, builderNames=[JANITOR_NAME], hour=self.hour, **nightly)
        )
        schedulers.append(ForceScheduler(name=f"{JANITOR_NAME}_force", builderNames=[JANITOR_NAME]))
        config_dict.setdefault("builders", []).append(
            BuilderConfig(
                name=JANITOR_NAME, workername=JANITOR_NAME, factory=BuildFactory(steps=steps)
            )
        )
        config_dict.setdefault("protocols", {}).setdefault("null", {})
        config_dict.setdefault("workers", []).append(LocalWorker(JANITOR_NAME))

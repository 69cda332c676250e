"""The scheduler manager (``master.scheduler_manager``): one child per configured scheduler."""

from __future__ import annotations

from typing import Any

from buildyard.common.service import ConfiguredService, ServiceManager
from buildyard.master.schedulers.base import SchedulerConfig, SchedulerContext


class ConfiguredScheduler(ConfiguredService[Any]):
    pass


class SchedulerManager(ServiceManager[Any]):
    def __init__(self, ctx: SchedulerContext) -> None:
        super().__init__("scheduler_manager", factory=self._make)
        self.ctx = ctx

    def _make(self, name: str, config: Any) -> ConfiguredService[Any]:
        if isinstance(config, SchedulerConfig):
            return config.make_service(name, self.ctx)
        return ConfiguredScheduler(name, config)  # a stand-in of a class not implemented yet

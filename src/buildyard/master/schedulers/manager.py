"""The scheduler manager (``master.scheduler_manager``): one child per configured scheduler."""

from __future__ import annotations

from typing import Any

from buildyard.common.service import ConfiguredService, ServiceManager


class ConfiguredScheduler(ConfiguredService[Any]):
    pass


class SchedulerManager(ServiceManager[Any]):
    def __init__(self) -> None:
        super().__init__("scheduler_manager", factory=ConfiguredScheduler)

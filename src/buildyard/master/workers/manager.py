"""The worker manager (``master.workers``): a child per configured worker, and the listener
(``master.workers.listener``) where workers connect over msgpack_experimental_v7."""

from __future__ import annotations

from typing import Any

from buildyard.common.service import ConfiguredService, ServiceManager
from buildyard.master.data.updates import Updates
from buildyard.master.workers.listener import WorkerListener


class ConfiguredWorker(ConfiguredService[Any]):
    """One worker of the configuration, not connected yet."""


class WorkerManager(ServiceManager[Any]):
    def __init__(self, *, updates: Updates) -> None:
        super().__init__("workers", factory=ConfiguredWorker)
        self.listener = WorkerListener(updates=updates)
        self.add_child(self.listener)

"""The worker manager (``master.workers``): a child per configured worker, the listener
(``master.workers.listener``) where workers connect, and the processes of the local workers
(``master.workers.local``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from buildyard.common.service import ConfiguredService, ServiceManager
from buildyard.master.data.updates import Updates
from buildyard.master.workers.listener import WorkerListener
from buildyard.master.workers.local import LocalWorkers


class ConfiguredWorker(ConfiguredService[Any]):
    """One worker of the configuration, not connected yet."""


class WorkerManager(ServiceManager[Any]):
    def __init__(self, *, updates: Updates, basedir: Path) -> None:
        super().__init__("workers", factory=ConfiguredWorker)
        self.listener = WorkerListener(updates=updates)
        self.add_child(self.listener)
        # after the listener: stopped before it, so the local workers leave while it serves
        self.local = LocalWorkers(master_basedir=basedir)
        self.add_child(self.local)

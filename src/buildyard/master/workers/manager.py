"""The worker manager (``master.workers``): a child per configured worker, the listener
(``master.workers.listener``) where workers connect, the processes of the local workers
(``master.workers.local``) and the instances of the latent ones (``master.workers.latent``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from buildyard.common.service import ConfiguredService, ReconfigResult, ServiceManager
from buildyard.master.data.updates import Updates
from buildyard.master.workers.latent import LatentWorkers
from buildyard.master.workers.listener import WorkerListener
from buildyard.master.workers.local import LocalWorkers


class ConfiguredWorker(ConfiguredService[Any]):
    """One worker of the configuration, not connected yet."""


class WorkerManager(ServiceManager[Any]):
    def __init__(self, *, updates: Updates, basedir: Path, master_name: str = "") -> None:
        super().__init__("workers", factory=ConfiguredWorker)
        self.listener = WorkerListener(updates=updates)
        self.add_child(self.listener)
        # after the listener: stopped before it, so the local workers leave while it serves
        self.local = LocalWorkers(master_basedir=basedir)
        self.add_child(self.local)
        # last: stopped first, so that the instances stop while the listener still serves
        self.latent = LatentWorkers(
            updates=updates, listener=self.listener, master_name=master_name or str(basedir)
        )
        self.add_child(self.latent)

    async def apply(self, configs: Mapping[str, Any]) -> ReconfigResult:
        result = await super().apply(configs)
        await self.latent.configure(configs)
        return result

"""The worker manager (``master.workers``): one child service per configured worker.

Connections over msgpack_experimental_v7 arrive with issue 3; for now a configured worker is a
service that holds its configuration, kept or replaced by reconfig like every named child.
"""

from __future__ import annotations

from typing import Any

from buildyard.common.service import ConfiguredService, ServiceManager


class ConfiguredWorker(ConfiguredService[Any]):
    """One worker of the configuration, not connected yet."""


class WorkerManager(ServiceManager[Any]):
    def __init__(self) -> None:
        super().__init__("workers", factory=ConfiguredWorker)

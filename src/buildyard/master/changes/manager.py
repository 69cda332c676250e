"""The change manager (``master.change_svc``): one child per configured change source."""

from __future__ import annotations

from typing import Any

from buildyard.common.service import ConfiguredService, ServiceManager


class ConfiguredChangeSource(ConfiguredService[Any]):
    pass


class ChangeManager(ServiceManager[Any]):
    def __init__(self) -> None:
        super().__init__("change_svc", factory=ConfiguredChangeSource)

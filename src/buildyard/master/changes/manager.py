"""The change manager (``master.change_svc``): one child per configured change source."""

from __future__ import annotations

from typing import Any

from buildyard.common.service import ConfiguredService, ServiceManager
from buildyard.master.changes.base import ChangeSourceConfig, ChangeSourceContext


class ConfiguredChangeSource(ConfiguredService[Any]):
    pass


class ChangeManager(ServiceManager[Any]):
    def __init__(self, ctx: ChangeSourceContext) -> None:
        super().__init__("change_svc", factory=self._make)
        self.ctx = ctx

    def _make(self, name: str, config: Any) -> ConfiguredService[Any]:
        if isinstance(config, ChangeSourceConfig):
            return config.make_service(name, self.ctx)
        return ConfiguredChangeSource(name, config)  # a stand-in of a class not implemented yet

"""A small build context for rendering tests: source stamps, worker info and secrets in dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from buildyard.master.model.properties import Properties, RenderContext


class BuildContext:
    """A :class:`RenderContext` over plain dicts; remembers which secrets were asked for."""

    def __init__(
        self,
        *,
        sourcestamps: Mapping[str, Mapping[str, Any]] | None = None,
        worker_info: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self._sourcestamps = dict(sourcestamps or {})
        self._worker_info = dict(worker_info or {})
        self._secrets = dict(secrets or {})
        self.secrets_asked: list[str] = []

    def sourcestamp(self, codebase: str) -> Mapping[str, Any] | None:
        return self._sourcestamps.get(codebase)

    @property
    def worker_info(self) -> Mapping[str, Any]:
        return self._worker_info

    async def secret(self, name: str) -> str | None:
        self.secrets_asked.append(name)
        return self._secrets.get(name)


def props_for(context: RenderContext | None = None, **values: Any) -> Properties:
    """Properties holding ``values`` (source "Test"), rendered for ``context``."""
    props = Properties()
    props.update(values, "Test")
    props.build = context
    return props

"""A worker as the store knows it: who it is, where it is configured and connected."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple


class ConfiguredOn(NamedTuple):
    """A builder of a master that may run builds on the worker."""

    masterid: int
    builderid: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Worker:
    id: int
    name: str
    # what the worker said about itself when it last connected (admin, host, version, ...)
    workerinfo: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    paused: bool = False
    pause_reason: str | None = None
    # finish running builds, take no new ones
    graceful: bool = False
    # masters the worker is connected to, ascending
    connected_to: tuple[int, ...] = ()
    # sorted by (masterid, builderid)
    configured_on: tuple[ConfiguredOn, ...] = ()

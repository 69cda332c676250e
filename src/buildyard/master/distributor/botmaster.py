"""The botmaster (``master.botmaster``): the builders as child services, and the distributor.

On every (re)configuration the builders named in the config become exactly this master's
builders in the database (``builder_masters``), with ``builders/{id}/started`` and ``stopped``
events for the ones added and removed, and each builder's description and tags as the
``builders`` resource serves them; builders whose configuration did not change keep running.
A ``description_format="markdown"`` description is rendered to ``description_html`` with the
``markdown`` package, as Buildbot does (without it, the master warns once per builder and serves
no HTML).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from buildyard.common.service import ConfiguredService, ReconfigResult, ServiceManager
from buildyard.master.data.updates import BuilderInfo, Updates
from buildyard.master.db.connector import Database
from buildyard.master.distributor.distributor import BuildRequestDistributor
from buildyard.master.mq.base import MessageQueue
from buildyard.master.workers.manager import WorkerManager

log = structlog.get_logger(__name__)


class Builder(ConfiguredService[Any]):
    """A builder of this master; ``builderid`` is its id in the database."""

    __slots__ = ("builderid",)  # one per builder: 10,000 of them on a big master

    def __init__(self, name: str, config: Any) -> None:
        super().__init__(name, config)
        self.builderid: int | None = None


class BotMaster(ServiceManager[Any]):
    def __init__(
        self,
        *,
        updates: Updates,
        db: Database,
        mq: MessageQueue,
        workers: WorkerManager,
        masterid: Callable[[], int],
        master_basedir: Path | None = None,
        schedulers: Callable[[str], Any] | None = None,
    ) -> None:
        super().__init__("botmaster", factory=Builder)
        self._updates = updates
        self.brd = BuildRequestDistributor(
            updates=updates,
            db=db,
            mq=mq,
            workers=workers,
            masterid=masterid,
            master_basedir=master_basedir,
            schedulers=schedulers,
        )
        self.add_child(self.brd)
        # called once a clean shutdown has seen the last build end (the master stops)
        self.on_shutdown: Callable[[], None] | None = None
        self._shutdown: asyncio.Task[None] | None = None
        self._shutting_down = False

    # -- clean shutdown (Buildbot's botmaster.cleanShutdown / cancelCleanShutdown) ---------------

    @property
    def shutting_down(self) -> bool:
        """Buildbot's ``shuttingDown``: a clean shutdown is under way."""
        return self._shutting_down

    def clean_shutdown(self) -> bool:
        """Start no more builds; once the running ones have ended, stop the master
        (``on_shutdown``). False if one is already under way."""
        if self.shutting_down:
            return False
        self.brd.hold = self._shutting_down = True
        log.info("clean_shutdown_started", running_builds=len(self.brd.building))
        self._shutdown = self.spawn(self._wait_for_builds(), name="clean shutdown")
        return True

    def cancel_clean_shutdown(self) -> bool:
        """Builds start again; False if no clean shutdown was under way."""
        if not self.shutting_down:
            return False
        if self._shutdown is not None:
            self._shutdown.cancel()
            self._shutdown = None
        self.brd.hold = self._shutting_down = False
        log.info("clean_shutdown_cancelled")
        self.brd.maybe_start_builds()
        return True

    async def _wait_for_builds(self) -> None:
        # the pass under way ends first (a build it starts is waited for too)
        await self.brd.drain()
        log.info("clean_shutdown_builds_done")
        if self.on_shutdown is not None:
            self.on_shutdown()

    @property
    def builders(self) -> dict[str, Builder]:
        return {b.name: b for b in self.children if isinstance(b, Builder)}

    async def apply_builders(
        self, *, masterid: int, configs: Sequence[Any], master_config: Any = None
    ) -> ReconfigResult:
        result = await self.apply({c.name: c for c in configs})
        ids = await self._updates.update_builder_list(
            masterid=masterid, builder_names=[c.name for c in configs]
        )
        for name, builder in self.builders.items():
            builder.builderid = ids[name]
        written = await self._updates.update_builder_infos({ids[c.name]: _info(c) for c in configs})
        if written:
            log.debug("builder_infos_written", builderids=written)
        self.brd.configure(
            {name: (ids[name], b.config) for name, b in self.builders.items()}, master_config
        )
        log.info(
            "builders_configured",
            added=_shown(result.added),
            removed=_shown(result.removed),
            updated=_shown(result.updated),
            unchanged=_shown(result.unchanged),
        )
        return result


def _shown(names: Sequence[str]) -> list[str] | str:
    """The names for a log line: all of them while few, else how many and the first ones (a
    master with 10,000 builders would otherwise log them all at every start)."""
    if len(names) <= 50:
        return list(names)
    return f"{len(names)} builders: {', '.join(names[:5])}, ..."


_MARKDOWN_WARNED: set[str] = set()


def _info(config: Any) -> BuilderInfo:
    description = getattr(config, "description", None)
    fmt = getattr(config, "description_format", None)
    html = None
    if description is not None and fmt == "markdown":
        try:
            import markdown  # type: ignore[import-untyped, unused-ignore]
        except ImportError:
            if config.name not in _MARKDOWN_WARNED:
                _MARKDOWN_WARNED.add(config.name)
                log.warning(
                    "builder_description_not_rendered",
                    builder=config.name,
                    reason="description_format='markdown' needs the markdown package "
                    "(pip install markdown)",
                )
        else:
            html = str(markdown.markdown(description))
    return BuilderInfo(
        description=description,
        description_format=fmt,
        description_html=html,
        project=getattr(config, "project", None),
        tags=tuple(getattr(config, "tags", ()) or ()),
    )

"""Buildbot names that master.cfg files import from ``buildbot.*`` modules but that are not
plugin names: base classes users subclass, ``buildbot.config.error`` and a few helpers.

The base classes are stand-ins like the plugin ones, named by their Buildbot module path.
"""

from __future__ import annotations

from collections.abc import Iterable

from buildyard.common.config_object import not_implemented
from buildyard.common.errors import ConfigError, ConfigErrors, caller_location, config_error
from buildyard.master.logs.observer import BufferLogObserver, LineConsumerLogObserver, LogObserver
from buildyard.master.reporters.base import ReporterBase
from buildyard.master.reporters.service import BuildbotService
from buildyard.master.schedulers.forceparams import ValidationError
from buildyard.master.steps.base import BuildStepFailed, CommandMixin, ShellMixin
from buildyard.master.steps.remotecommand import RemoteCommand, RemoteShellCommand
from buildyard.master.steps.source.base import Source
from buildyard.master.steps.worker import CompositeStepMixin
from buildyard.master.workers.config import AbstractLatentWorker
from buildyard.master.www.auth import NoAuth, UserInfoProviderBase
from buildyard.plugins import schedulers

__all__ = [
    "AbstractLatentWorker",
    "AbstractWorker",
    "BaseScheduler",
    "BufferLogObserver",
    "BuildStepFailed",
    "BuildbotService",
    "ChangeSource",
    "CommandMixin",
    "CompositeStepMixin",
    "ConfigErrors",
    "HTTPClientService",
    "LineConsumerLogObserver",
    "LogObserver",
    "NoAuth",
    "PollingChangeSource",
    "ReconfigurablePollingChangeSource",
    "RemoteCommand",
    "RemoteShellCommand",
    "ReporterBase",
    "Scheduler",
    "ShellMixin",
    "Source",
    "UserInfoProviderBase",
    "ValidationError",
    "bytes2unicode",
    "error",
    "flatten",
    "unicode2bytes",
]

_WORKERS = "custom worker classes"
_SCHEDULING = "custom schedulers and change sources"
_REPORTING = "custom services and reporters"

AbstractWorker = not_implemented("buildbot.worker.AbstractWorker", _WORKERS)

BaseScheduler = not_implemented("buildbot.schedulers.base.BaseScheduler", _SCHEDULING)
ChangeSource = not_implemented("buildbot.changes.base.ChangeSource", _SCHEDULING)
PollingChangeSource = not_implemented("buildbot.changes.base.PollingChangeSource", _SCHEDULING)
ReconfigurablePollingChangeSource = not_implemented(
    "buildbot.changes.base.ReconfigurablePollingChangeSource", _SCHEDULING
)
# Buildbot's deprecated name for SingleBranchScheduler.
Scheduler = schedulers.SingleBranchScheduler


HTTPClientService = not_implemented("buildbot.util.httpclientservice.HTTPClientService", _REPORTING)


def error(error: str, always_raise: bool = False) -> None:
    """``buildbot.config.error``: report a configuration mistake from master.cfg.

    Collected with the others while master.cfg loads; ``always_raise`` stops the load here.
    """
    if always_raise:
        raise ConfigErrors([ConfigError(error, location=caller_location())])
    config_error(error)


def bytes2unicode(
    x: str | bytes | None, encoding: str = "utf-8", errors: str = "strict"
) -> str | None:
    """``buildbot.util.bytes2unicode``: decode bytes, pass str and None through."""
    return x.decode(encoding, errors) if isinstance(x, bytes) else x


def unicode2bytes(x: str | bytes, encoding: str = "utf-8", errors: str = "strict") -> bytes | str:
    """``buildbot.util.unicode2bytes``: encode str, pass anything else through."""
    return x.encode(encoding, errors) if isinstance(x, str) else x


def flatten(items: object, types: type | tuple[type, ...] = (list,)) -> object:
    """``buildbot.util.flatten``: nested lists (of ``types``) as one flat list."""
    if not isinstance(items, types):
        return items
    assert isinstance(items, Iterable)
    flat: list[object] = []
    for item in items:
        if isinstance(item, types):
            flattened = flatten(item, types)
            assert isinstance(flattened, list)
            flat.extend(flattened)
        else:
            flat.append(item)
    return flat

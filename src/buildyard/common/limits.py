"""The connection limits of the master's listeners as configured, and the process-wide parts
of enforcing them: the open-file limit, throttled log lines, and the handler of failed accepts.

:mod:`buildyard.common.connections` enforces the limits on each listener's connections, through
aiohttp; this module imports no aiohttp, so that reading a configuration, or a master that
serves no HTTP (no web server, PB workers only), does not load it.

Imports nothing from buildyard (see the package).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import math
import resource
import time
import weakref
from collections.abc import Mapping
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)

# at most one line per interval for each kind of repeated event (closings, failed accepts)
LOG_INTERVAL = 30.0
DEFAULT_HEADER_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 120.0  # longer than a reverse proxy keeps idle upstream connections
DEFAULT_MAX_PENDING = 256
# how long a handler that reads a request's body waits for it (the guard leaves a connection
# alone once a handler runs: the handler bounds what it waits for)
BODY_TIMEOUT = 60.0
# the accept errors that mean "out of open files or memory"; asyncio retries them after 1 s
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


# -- configuration -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    # None: DEFAULT_MAX_PENDING, or an eighth of the open-file limit when that is lower
    max_pending: int | None = None

    def pending_cap(self) -> int:
        if self.max_pending is not None:
            return self.max_pending
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return DEFAULT_MAX_PENDING
        return max(1, min(DEFAULT_MAX_PENDING, soft // 8))


# the keys of a listener's options that set its limits (read_limits)
LIMIT_KEYS = frozenset({"header_timeout", "idle_timeout", "max_pending_connections"})


def _seconds(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key!r} must be a number of seconds, not {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{key!r} must be a positive number of seconds, not {value!r}")
    return float(value)


def read_limits(options: Mapping[str, object]) -> ConnectionLimits:
    """The limits that ``options`` (a listener's settings) set; ValueError naming a bad one.

    Keys other than :data:`LIMIT_KEYS` are the caller's to check."""
    header = options.get("header_timeout")
    idle = options.get("idle_timeout")
    cap = options.get("max_pending_connections")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ValueError(f"'max_pending_connections' must be a positive integer, not {cap!r}")
    return ConnectionLimits(
        header_timeout=DEFAULT_HEADER_TIMEOUT
        if header is None
        else _seconds("header_timeout", header),
        idle_timeout=DEFAULT_IDLE_TIMEOUT if idle is None else _seconds("idle_timeout", idle),
        max_pending=cap,
    )


# -- the process ---------------------------------------------------------------------------------


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard) as they now are."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # an unlimited hard limit some systems refuse
        log.warning("open_file_limit_unchanged", soft=soft, hard=hard, reason=str(exc))
        return soft, hard
    return hard, hard


class Throttled:
    """One log line per ``interval`` for an event that may repeat thousands of times a second:
    the first occurrence is logged at once, later ones as a count with the next line due."""

    def __init__(self, event: str, *, interval: float = LOG_INTERVAL) -> None:
        self._event = event
        self._interval = interval
        self._last = -math.inf
        self._count = 0

    def note(self, **fields: Any) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        log.warning(self._event, count=self._count, per_seconds=self._interval, **fields)
        self._last, self._count = now, 0


class Sheddable(Protocol):
    """A listener's guard, as the accept-error handler sees it."""

    def shed_half(self) -> int: ...


# the guards of the process's listeners (buildyard.common.connections adds each it makes)
GUARDS: weakref.WeakSet[Sheddable] = weakref.WeakSet()
_accept_failures = Throttled("accept_failed")
# asyncio tries every queued accept again (and fails again) before the closed files are free:
# shed once per its retry delay, not once per failure
_SHED_INTERVAL = 1.0
_last_shed = -math.inf


def install_accept_error_handler(loop: asyncio.AbstractEventLoop) -> None:
    """Make a failed accept for want of resources (EMFILE, ...) shed pending connections and
    log one line per interval; other errors go to the handler in place before."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS and "socket" in context:
            global _last_shed  # noqa: PLW0603  (one process, one loop: see the module)
            shed = 0
            now = time.monotonic()
            if now - _last_shed >= _SHED_INTERVAL:
                _last_shed = now
                shed = sum(guard.shed_half() for guard in list(GUARDS))
            _accept_failures.note(reason=str(exc), pending_closed=shed)
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)

"""Logging setup: structlog, JSON lines to a file in production, readable console otherwise.

Library code only does ``log = structlog.get_logger(__name__)``; processes call
:func:`configure` once at start.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

Redaction = Callable[[str], str]

# What hides secrets in this process's log lines: one function per running master (its
# Redactor.redact). The log configuration is process-wide, so this is too; see add_redaction.
_redactions: list[Redaction] = []


def add_redaction(redact: Redaction) -> Callable[[], None]:
    """Have every log line's texts pass ``redact`` (a master adds its secret redaction when
    it starts); returns the function that takes it away again."""
    _redactions.append(redact)

    def remove() -> None:
        if redact in _redactions:
            _redactions.remove(redact)

    return remove


def _hide(value: Any, redact: Redaction) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {_hide(k, redact): _hide(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_hide(v, redact) for v in value]
    text = str(value)  # an exception, a path, ...: shown as its text, which is checked
    hidden = redact(text)
    return value if hidden == text else hidden


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The structlog processor that applies :func:`add_redaction`'s functions to every value
    of an event (after exceptions are formatted, before rendering)."""
    for redact in tuple(_redactions):
        for key, value in event_dict.items():
            event_dict[key] = _hide(value, redact)
    return event_dict


def configure(
    *, logfile: Path | None = None, json: bool = False, level: int = logging.INFO
) -> None:
    stream: TextIO = logfile.open("a", buffering=1, encoding="utf-8") if logfile else sys.stderr
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )

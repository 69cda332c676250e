"""Logging setup: structlog, JSON lines to a file in production, readable console otherwise.

Library code only does ``log = structlog.get_logger(__name__)``; processes call
:func:`configure` once at start.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO

import structlog


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
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )

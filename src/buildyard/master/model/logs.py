"""Logs of build steps (their lines live in chunks, see ``db.logs``)."""

from __future__ import annotations

import dataclasses
import enum


class LogType(enum.StrEnum):
    # each line starts with its stream: "o" stdout, "e" stderr, "h" header
    STDIO = "s"
    TEXT = "t"
    HTML = "h"
    # content deleted by the log horizon
    DELETED = "d"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Log:
    id: int
    name: str
    # unique within the step, at most 50 characters
    slug: str
    stepid: int
    complete: bool
    num_lines: int
    type: LogType

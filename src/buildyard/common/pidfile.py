"""Pid files of the master and worker daemons."""

from __future__ import annotations

import os
from pathlib import Path


def running_pid(pidfile: Path) -> int | None:
    """The pid written in ``pidfile`` if that process is alive, else None."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return pid

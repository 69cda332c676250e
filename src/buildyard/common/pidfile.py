"""Pid files of the master and worker daemons."""

from __future__ import annotations

import os
import time
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


def signal_and_wait(pid: int, sig: int, *, timeout: float) -> bool:
    """Send ``sig`` to ``pid`` and wait up to ``timeout`` seconds for it to exit; whether it did."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False

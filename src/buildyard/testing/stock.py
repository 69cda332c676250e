"""Where the stock Buildbot 4.3.0 packages live for compatibility tests and benchmarks.

``scripts/setup.sh`` installs buildbot and buildbot-worker 4.3.0 into their own venv,
``$BUILDYARD_BUILDBOT_VENV`` (default ``~/.cache/buildyard/buildbot-4.3.0``), and the newest
buildbot-worker of the 3.x line (3.11.9) into another, ``$BUILDYARD_BUILDBOT_WORKER3_VENV``
(default ``~/.cache/buildyard/buildbot-worker-3.11.9``). buildyard never imports them; tests
read their files or run their commands.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_VENV = Path.home() / ".cache" / "buildyard" / "buildbot-4.3.0"
WORKER3_VERSION = "3.11.9"
DEFAULT_WORKER3_VENV = Path.home() / ".cache" / "buildyard" / f"buildbot-worker-{WORKER3_VERSION}"
BUILDBOT3_VERSION = "3.11.9"
DEFAULT_BUILDBOT3_VENV = Path.home() / ".cache" / "buildyard" / f"buildbot-{BUILDBOT3_VERSION}"


class StockBuildbotMissing(RuntimeError):
    pass


def buildbot_venv() -> Path:
    venv = Path(os.environ.get("BUILDYARD_BUILDBOT_VENV") or DEFAULT_VENV)
    if not (venv / "bin" / "python").exists():
        raise StockBuildbotMissing(
            f"no stock Buildbot venv at {venv}; run ./scripts/setup.sh (or set "
            "BUILDYARD_BUILDBOT_VENV)"
        )
    return venv


def worker3_venv() -> Path:
    """The venv of the older stock worker (the 3.x line), as sites that upgrade workers last
    still run."""
    venv = Path(os.environ.get("BUILDYARD_BUILDBOT_WORKER3_VENV") or DEFAULT_WORKER3_VENV)
    if not (venv / "bin" / "buildbot-worker").exists():
        raise StockBuildbotMissing(
            f"no buildbot-worker {WORKER3_VERSION} venv at {venv}; run ./scripts/setup.sh (or "
            "set BUILDYARD_BUILDBOT_WORKER3_VENV)"
        )
    return venv


def buildbot3_venv() -> Path:
    """The venv of a Buildbot master of the 3.x line, whose databases buildyard adopts."""
    venv = Path(os.environ.get("BUILDYARD_BUILDBOT3_VENV") or DEFAULT_BUILDBOT3_VENV)
    if not (venv / "bin" / "buildbot").exists():
        raise StockBuildbotMissing(
            f"no buildbot {BUILDBOT3_VERSION} venv at {venv}; run ./scripts/setup.sh (or set "
            "BUILDYARD_BUILDBOT3_VENV)"
        )
    return venv


def buildbot_site_packages() -> Path:
    """The site-packages directory holding the stock ``buildbot`` package."""
    venv = buildbot_venv()
    found = sorted(venv.glob("lib/python3*/site-packages/buildbot"))
    if not found:
        raise StockBuildbotMissing(f"{venv} has no buildbot package; run ./scripts/setup.sh")
    return found[-1].parent

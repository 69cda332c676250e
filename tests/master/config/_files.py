"""Helpers for config tests: finding lines, and Buildbot 4.3's sample master.cfg."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from buildyard.testing import stock

WriteConfig = Callable[[str], Path]


def line_of(path: Path, marker: str) -> int:
    """The number of the first line of ``path`` that contains ``marker``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"{marker!r} is not in {path}")


def buildbot_site_packages() -> Path:
    """site-packages of the stock Buildbot 4.3.0 venv (never skipped: CI must have it)."""
    return stock.buildbot_site_packages()

"""Source steps: check out version-controlled trees on the worker (``buildbot.steps.source``)."""

from __future__ import annotations

from buildyard.master.steps.source.base import Source
from buildyard.master.steps.source.gerrit import Gerrit
from buildyard.master.steps.source.git import Git

__all__ = ["Gerrit", "Git", "Source"]

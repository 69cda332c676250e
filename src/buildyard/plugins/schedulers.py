"""``schedulers``: what turns changes, clicks and clocks into build requests."""

from __future__ import annotations

from typing import Any

from buildyard.master.schedulers.basic import AnyBranchScheduler, SingleBranchScheduler
from buildyard.master.schedulers.forced import ForceScheduler
from buildyard.master.schedulers.timed import Nightly, NightlyTriggerable, Periodic
from buildyard.master.schedulers.triggerable import Dependent, Triggerable
from buildyard.master.schedulers.trysched import Try_Jobdir, Try_Userpass
from buildyard.plugins._namespace import SCHEDULERS, placeholders, unknown_name

__all__ = [
    "AnyBranchScheduler",
    "Dependent",
    "ForceScheduler",
    "Nightly",
    "NightlyTriggerable",
    "Periodic",
    "SingleBranchScheduler",
    "Triggerable",
    "Try_Jobdir",
    "Try_Userpass",
]

# Buildbot 4.3's names in this namespace.
_NAMES = [
    "AnyBranchScheduler",
    "Dependent",
    "ForceScheduler",
    "Nightly",
    "NightlyTriggerable",
    "Periodic",
    "SingleBranchScheduler",
    "Triggerable",
    "Try_Jobdir",
    "Try_Userpass",
]

# Every name not imported above is a stand-in until buildyard implements it.
globals().update(placeholders("schedulers", {n: SCHEDULERS for n in _NAMES if n not in globals()}))


def __getattr__(name: str) -> Any:
    raise unknown_name("schedulers", name, _NAMES)

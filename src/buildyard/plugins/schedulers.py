"""``schedulers``: what turns changes, clicks and clocks into build requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from buildyard.plugins._namespace import SCHEDULERS, LazyNames

if TYPE_CHECKING:
    from buildyard.master.schedulers.basic import AnyBranchScheduler, SingleBranchScheduler
    from buildyard.master.schedulers.forced import ForceScheduler
    from buildyard.master.schedulers.timed import Nightly, NightlyTriggerable, Periodic
    from buildyard.master.schedulers.triggerable import Dependent, Triggerable
    from buildyard.master.schedulers.trysched import Try_Jobdir, Try_Userpass

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

# Each name is resolved when master.cfg first uses it (buildyard.plugins._namespace.LazyNames):
# the implemented ones from these modules, the others as stand-ins until buildyard has them.
_LAZY = LazyNames(
    "schedulers",
    store=globals(),
    known=_NAMES,
    sources={
        "AnyBranchScheduler": "buildyard.master.schedulers.basic",
        "SingleBranchScheduler": "buildyard.master.schedulers.basic",
        "ForceScheduler": "buildyard.master.schedulers.forced",
        "Nightly": "buildyard.master.schedulers.timed",
        "NightlyTriggerable": "buildyard.master.schedulers.timed",
        "Periodic": "buildyard.master.schedulers.timed",
        "Dependent": "buildyard.master.schedulers.triggerable",
        "Triggerable": "buildyard.master.schedulers.triggerable",
        "Try_Jobdir": "buildyard.master.schedulers.trysched",
        "Try_Userpass": "buildyard.master.schedulers.trysched",
    },
    features=SCHEDULERS,
)


def __getattr__(name: str) -> Any:
    return _LAZY.resolve(name)


def __dir__() -> list[str]:
    return _LAZY.names()

"""A master process as the store knows it."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Master:
    id: int
    # generally "hostname:basedir"
    name: str
    active: bool
    # epoch seconds of the last check-in
    last_active: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeactivationCleanup:
    """What was undone when a master was found gone, so the caller can announce it."""

    masterid: int
    builderids: tuple[int, ...] = ()
    schedulerids: tuple[int, ...] = ()
    changesourceids: tuple[int, ...] = ()
    # builds of that master left unfinished, now finished with RETRY (with their steps and logs):
    # (buildid, builderid, number), (stepid, buildid), (logid, stepid)
    builds: tuple[tuple[int, int, int], ...] = ()
    steps: tuple[tuple[int, int], ...] = ()
    logs: tuple[tuple[int, int], ...] = ()
    # workers recorded as connected to that master, no longer so
    workerids: tuple[int, ...] = ()
    # incomplete requests whose claim was released so live masters take them:
    # (brid, builderid, buildsetid)
    unclaimed: tuple[tuple[int, int, int], ...] = ()
    # incomplete requests whose last build had finished (the master died before completing
    # the request), now completed with that build's result: (brid, builderid, buildsetid)
    completed: tuple[tuple[int, int, int], ...] = ()
    # incomplete buildsets with a request of that master's, to complete if all their requests
    # are (the master died between completing the last request and the buildset)
    buildsets: tuple[int, ...] = ()

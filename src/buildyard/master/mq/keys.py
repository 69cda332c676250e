"""Routing-key matching and the keys of the events we produce (Buildbot's shapes)."""

from __future__ import annotations

from buildyard.master.mq.base import Key, Pattern


def matches(pattern: Pattern, key: Key) -> bool:
    if len(pattern) != len(key):
        return False
    return all(p is None or p in ("*", k) for p, k in zip(pattern, key, strict=True))


def master_event(masterid: int, event: str) -> Key:
    """("masters", id, "started" | "stopped")."""
    return ("masters", str(masterid), event)


def builder_event(builderid: int, event: str) -> Key:
    """("builders", id, "started" | "stopped" | "updated")."""
    return ("builders", str(builderid), event)


def buildrequest_event(brid: int, builderid: int, bsid: int, event: str) -> tuple[Key, ...]:
    """Buildbot publishes a request's events under three key forms."""
    return (
        ("buildsets", str(bsid), "builders", str(builderid), "buildrequests", str(brid), event),
        ("buildrequests", str(brid), event),
        ("builders", str(builderid), "buildrequests", str(brid), event),
    )

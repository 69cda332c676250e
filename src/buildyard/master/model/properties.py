"""JSON values and the ``(value, source)`` pairs that Buildbot properties are stored as."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

# Read-only containers keep the alias covariant: a list[str] is a JsonValue.
JsonValue: TypeAlias = (
    bool | int | float | str | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
)

# A property as stored: its JSON value and where it came from ("Change", "Scheduler", ...).
PropertyValue: TypeAlias = tuple[JsonValue, str]

"""The ``forcescheduler`` resource: the running force schedulers and their form fields.

They live in the configuration, not the database, so the master hands the data API a callable
giving each one's resource dict (``ForceSchedulerService.data()``): :func:`endpoints`.
``/builders/{builderid}/forceschedulers`` lists those that can build that builder, which the
builder page of the UI reads for its force buttons.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from buildyard.master.data.resources.base import (
    ANY,
    STR,
    Collection,
    Endpoint,
    Item,
    ResourceType,
    list_of,
    map_of,
)
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database

FORCESCHEDULER = ResourceType(
    name="forcescheduler",
    plural="forceschedulers",
    fields={
        "name": FieldType.IDENTIFIER,
        "button_name": FieldType.STRING,
        "label": FieldType.STRING,
        "builder_names": FieldType.OTHER,
        "enabled": FieldType.BOOLEAN,
        "all_fields": FieldType.OTHER,
    },
    json={
        "builder_names": list_of(STR),
        # each field as the scheduler describes it (name, fullName, type, default, ...)
        "all_fields": list_of(map_of(ANY)),
    },
)

# the running force schedulers' resource dicts
Provider = Callable[[], Sequence[Item]]


def endpoints(provider: Provider) -> tuple[Endpoint, ...]:
    async def collection(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
        items = list(provider())
        if "builderid" in kw:
            builder = await db.builders.get_builder(kw["builderid"])
            if builder is None:
                items = []
            else:
                items = [i for i in items if builder.name in i["builder_names"]]
        rows, total = spec.apply(items)
        return Collection(items=rows, total=total)

    async def item(db: Database, kw: Mapping[str, Any]) -> Item | None:
        return next((i for i in provider() if i["name"] == kw["name"]), None)

    return (
        Endpoint(pattern=("forceschedulers",), rtype=FORCESCHEDULER, collection=collection),
        Endpoint(
            pattern=("builders", "n:builderid", "forceschedulers"),
            rtype=FORCESCHEDULER,
            collection=collection,
        ),
        Endpoint(pattern=("forceschedulers", "i:name"), rtype=FORCESCHEDULER, item=item),
    )

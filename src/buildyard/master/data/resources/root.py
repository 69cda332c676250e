"""The ``rootlink`` and ``spec`` resources: what the API itself offers.

``/`` (``GET /api/v2``, deprecated in Buildbot 4.3.0 but still served) lists the top-level
collections Buildbot names as root links; ``/application.spec`` describes every endpoint as
Buildbot's ``allEndpoints`` does: its path pattern, its resource type and plural, and the type's
spec (Buildbot's ``getSpec``: ``{"type": <entity>, "fields": [{name, type, type_spec}]}``, a
plain type ``{"name": ...}``, a nullable one with ``can_be_null``, a list ``{"type": "list",
"of": ...}``). Both read the endpoints when asked, so endpoints registered later (the force
schedulers) are included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from buildyard.master.data.resources.base import (
    PROPERTIES,
    Collection,
    Endpoint,
    Item,
    JsonType,
    ResourceType,
)
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database

ROOTLINK = ResourceType(name="rootlink", plural="rootlinks", fields={"name": FieldType.STRING})
SPEC = ResourceType(
    name="spec",
    plural="specs",
    fields={
        "path": FieldType.STRING,
        "type": FieldType.STRING,
        "plural": FieldType.STRING,
        "type_spec": FieldType.OTHER,
    },
    json={"type_spec": JsonType(kind="object", values=JsonType(kind="any"))},
)

# Buildbot's root links (its endpoints' ``rootLinkName``), in the order it lists them; only those
# registered here are given
ROOT_LINKS = (
    "builders",
    "builds",
    "buildrequests",
    "codebases",
    "workers",
    "logchunks",
    "buildsets",
    "changes",
    "changesources",
    "masters",
    "sourcestamps",
    "schedulers",
    "forceschedulers",
    "projects",
)
# the entity type Buildbot names for a field that embeds an object (or a list of them)
_EMBEDDED = {
    "sourcestamps": "sourcestamp",
    "sourcestamp": "sourcestamp",
    "master": "master",
    "patch": "patch",
    "urls": "Url",
    "connected_to": "master_id",
    "configured_on": "master_builder",
}
_PLAIN_NAMES = {
    FieldType.INTEGER: "integer",
    FieldType.DATETIME: "datetime",
    FieldType.STRING: "string",
    FieldType.IDENTIFIER: "identifier",
    FieldType.BOOLEAN: "boolean",
}
_JSON_NAMES = {"integer": "integer", "string": "string", "boolean": "boolean"}
# bytes, which JSON has no form for (sent as null): Buildbot's type, by (entity, field)
_BINARY: Mapping[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("build_data", "value"): ("binary or None", {"name": "binary", "can_be_null": True}),
    ("patch", "body"): ("binary", {"name": "binary"}),
}

Spec = dict[str, Any]
Types = Mapping[str, ResourceType]


def _nullable(name: str, spec: Spec, nullable: bool) -> tuple[str, Spec]:
    return (f"{name} or None", {**spec, "can_be_null": True}) if nullable else (name, spec)


def _entity_spec(name: str, fields: Sequence[tuple[str, str, Spec]]) -> Spec:
    return {
        "type": name,
        "fields": [{"name": f, "type": t, "type_spec": s} for f, t, s in fields],
    }


def _json_type(field: str, t: JsonType, types: Types) -> tuple[str, Spec]:
    """Buildbot's type name and spec of a value that has only a JSON type."""
    if t.kind == "array" and isinstance(t.items, JsonType):
        _, of = _json_type(field, t.items, types)
        return _nullable("list", {"type": "list", "of": of}, t.nullable)
    if t.kind == "object" and t.properties is not None:
        name = _EMBEDDED.get(field, field)
        if name in types:
            spec = type_spec(types[name], types)
        else:
            spec = _entity_spec(
                name,
                [
                    (k, *(_BINARY.get((name, k)) or _json_type(k, v, types)))
                    for k, v in t.properties.items()
                ],
            )
        return _nullable(name, spec, t.nullable)
    if t.kind == "object" and t.values == PROPERTIES.values:
        name = "sourcedproperties"
    else:
        name = _JSON_NAMES.get(t.kind, "jsonobject")
    return _nullable(name, {"name": name}, t.nullable)


def _field_type(rtype: ResourceType, field: str, types: Types) -> tuple[str, Spec]:
    if (rtype.name, field) in _BINARY:
        return _BINARY[rtype.name, field]
    kind = rtype.fields[field]
    t = rtype.json_type(field)
    if kind in _PLAIN_NAMES:
        name = _PLAIN_NAMES[kind]
        return _nullable(name, {"name": name}, t.nullable)
    return _json_type(field, t, types)


def type_name(rtype: ResourceType) -> str:
    """The name of the type of the entities of ``rtype`` (Buildbot's ``entityType.name``)."""
    if rtype.entity is not None:
        return "sourcedproperties" if rtype.entity == PROPERTIES else "jsonobject"
    return rtype.name


def type_spec(rtype: ResourceType, types: Types) -> Spec:
    """Buildbot's ``getSpec()`` of the entity type of ``rtype``; ``types``: the resource types
    by name, for the entities a field embeds."""
    if rtype.entity is not None:
        return {"name": type_name(rtype)}
    return _entity_spec(rtype.name, [(f, *_field_type(rtype, f, types)) for f in rtype.fields])


def endpoints(listing: Callable[[], Sequence[Endpoint]]) -> tuple[Endpoint, ...]:
    """The root and spec endpoints of a data API whose endpoints ``listing`` gives."""

    async def root(_db: Database, _kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
        collections = {
            ep.pattern[0] for ep in listing() if len(ep.pattern) == 1 and ep.collection is not None
        }
        items, total = spec.apply([{"name": n} for n in ROOT_LINKS if n in collections])
        return Collection(items=items, total=total)

    async def specs(_db: Database, _kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
        eps = listing()
        types = {ep.rtype.name: ep.rtype for ep in eps}
        found: dict[tuple[str, ...], Item] = {}
        for ep in eps:  # the first endpoint of a pattern is the one that answers
            found.setdefault(
                ep.pattern,
                {
                    "path": "/".join(ep.pattern),
                    "type": type_name(ep.rtype),
                    "plural": ep.rtype.plural,
                    "type_spec": type_spec(ep.rtype, types),
                },
            )
        items, total = spec.apply([found[p] for p in sorted(found)])
        return Collection(items=items, total=total)

    return (
        Endpoint(pattern=(), rtype=ROOTLINK, collection=root),
        Endpoint(pattern=("application.spec",), rtype=SPEC, collection=specs),
    )

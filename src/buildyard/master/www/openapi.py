"""GET /api/v2/openapi.json: an OpenAPI 3.1 description of the REST API, made from the data API.

Nothing here is written by hand per resource: every endpoint the data API has (with those the
master registers, such as the force schedulers) becomes a path, its placeholders path
parameters, its resource type's fields (their :class:`~buildyard.master.data.resources.base.
JsonType`) the entity schema, and the query arguments :mod:`buildyard.master.data.resultspec`
takes its query parameters. So a new resource type is described as soon as it is registered.

What the description says of the server, and why:

- Paths that differ only in a placeholder's kind (``builders/{builderid}`` and
  ``builders/{name}``) are one path whose parameter takes either (``builderid_or_name``):
  OpenAPI forbids two templates of the same shape, and the server tries them in order anyway.
- An entity's fields are not ``required``: ``field=`` selects some of them. Without it every
  field is sent (the tests check that separately).
- Errors are ``{"error": "..."}`` sent as ``text/plain`` (as Buildbot does); a reply is JSON as
  ``application/json`` when the request accepts it, else pretty-printed as ``text/plain``.
- Control actions (:mod:`.control`) are POSTs of JSON-RPC 2.0 on the entities that have them.
- Every operation may be refused with a 403 (:mod:`.authz`); none answers 401: a session that
  is not valid is anonymous, and logging in (``/auth/login``) is outside the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

from buildyard.master.data.resources.base import Endpoint, JsonType, ResourceType
from buildyard.master.data.resultspec import (
    IDENTIFIER_RE,
    MAX_COLUMN_INT,
    MAX_INT,
    MIN_COLUMN_INT,
    MIN_INT,
    FieldType,
)
from buildyard.master.www import control, rest

Schema = dict[str, Any]

# the actions of each resource type; a force scheduler's is ``force`` (control.post)
ACTIONS: Mapping[str, tuple[str, ...]] = {**control.ACTIONS, "forcescheduler": ("force",)}
# filter operators, and those that take one value only (resultspec.parse)
_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "contains", "in", "notin")
_ONE_VALUE_OPS = ("lt", "le", "gt", "ge")
_BOOLEANS = ["on", "true", "yes", "1", "off", "false", "no", "0"]
_INTEGER: Schema = {"type": "integer", "minimum": MIN_INT, "maximum": MAX_INT}
_COUNT: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_INT}
_PLACEHOLDERS: Mapping[str, Schema] = {
    # an id: what an integer column holds (a larger one matches no path: 404)
    "n": {"type": "integer", "minimum": MIN_COLUMN_INT, "maximum": MAX_COLUMN_INT},
    "i": {"type": "string", "pattern": IDENTIFIER_RE.pattern, "minLength": 1, "maxLength": 50},
    # a path segment: anything but a slash (even an encoded one splits the path)
    "s": {"type": "string", "pattern": "^[^/]+$"},
}
_FORBIDDEN = (
    "Refused: the user lacks the role c['www']['authz'] asks for (or, with RemoteUserAuth, "
    "the request has no user header)"
)
# a reply is JSON either way (text/plain: pretty-printed, for clients that accept no JSON)
_REPLY_TYPES = ("application/json", "text/plain")


def _json_schema(t: JsonType) -> Schema:
    if t.kind == "any":
        return {}
    schema: Schema = {"type": [t.kind, "null"] if t.nullable else t.kind}
    if isinstance(t.items, tuple):
        schema["prefixItems"] = [_json_schema(i) for i in t.items]
        schema["minItems"] = schema["maxItems"] = len(t.items)
    elif t.items is not None:
        schema["items"] = _json_schema(t.items)
    if t.properties is not None:
        schema["properties"] = {k: _json_schema(v) for k, v in t.properties.items()}
        schema["required"] = list(t.properties)
        schema["additionalProperties"] = False
    elif t.values is not None:
        schema["additionalProperties"] = _json_schema(t.values)
    return schema


def _component(rtype: ResourceType) -> str:
    return rtype.name.capitalize()


def _entity_schema(rtype: ResourceType) -> Schema:
    schema = _json_schema(rtype.json_entity())
    if rtype.entity is None:
        # ``field=`` selects fields: none is required
        schema.pop("required", None)
        schema["description"] = f"A {rtype.name}: every field unless `field` selects some."
    return schema


def _envelope_name(ep: Endpoint) -> str:
    return _component(ep.rtype) + ("Collection" if ep.collection is not None else "Item")


def _envelope(ep: Endpoint) -> Schema:
    ref = {"$ref": f"#/components/schemas/{_component(ep.rtype)}"}
    if ep.collection is not None:
        items: Schema = {"type": "array", "items": ref}
        meta: Schema = {"$ref": "#/components/schemas/CollectionMeta"}
    else:
        items = {"type": "array", "items": ref, "minItems": 1, "maxItems": 1}
        meta = {"type": "object", "additionalProperties": False}
    return {
        "type": "object",
        "required": [ep.rtype.plural, "meta"],
        "properties": {ep.rtype.plural: items, "meta": meta},
        "additionalProperties": False,
    }


def _value_schema(kind: FieldType) -> Schema:
    if kind in (FieldType.INTEGER, FieldType.DATETIME):
        return dict(_INTEGER)
    if kind is FieldType.BOOLEAN:
        return {"type": "string", "enum": _BOOLEANS}
    if kind is FieldType.IDENTIFIER:
        return {"type": "string", "pattern": IDENTIFIER_RE.pattern}
    return {"type": "string", "pattern": "^[^\\u0000]*$"}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "schema": schema,
        "description": description,
    }


def _repeated(schema: Schema) -> Schema:
    return {"type": "array", "items": schema}


def _query_parameters(
    rtype: ResourceType, *, collection: bool, properties: bool = False
) -> list[Schema]:
    names = sorted(rtype.fields)
    if not names:  # not an object of fields (a properties map)
        return []
    params = [_query("field", _repeated({"enum": names}), "Return only these fields.")]
    wanted = _query("property", _repeated({"type": "string"}), "Properties to fill in (`*`: all).")
    if not collection:
        return [*params, wanted] if properties else params
    params += [
        _query("limit", _COUNT, "At most this many items (after filters and order)."),
        _query("offset", _COUNT, "Skip this many items (after filters and order)."),
        _query(
            "order",
            _repeated({"enum": [*names, *(f"-{n}" for n in names)]}),
            "Sort by these fields (`-`: descending); null sorts first ascending.",
        ),
        wanted,
    ]
    # a list field's filters take its elements (``tags__contains=x``)
    value_types = rtype.value_types()
    for name in names:
        value = _value_schema(value_types[name])
        params.append(_query(name, _repeated(value), f"Only items whose {name} is one of these."))
        for op in _OPS:
            schema = value if op in _ONE_VALUE_OPS else _repeated(value)
            params.append(_query(f"{name}__{op}", schema, f"Filter on {name} with `{op}`."))
    return params


def _error(description: str, media_type: str = "text/plain") -> Schema:
    ref = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {media_type: {"schema": ref}}}


def _path_shape(pattern: Sequence[str]) -> tuple[str, ...]:
    return tuple("*" if ":" in seg else seg for seg in pattern)


def _template(group: Sequence[Endpoint]) -> tuple[str, list[Schema]]:
    """The path template of endpoints of one shape, and its path parameters."""
    segments: list[str] = []
    params: list[Schema] = []
    for pos, seg in enumerate(group[0].pattern):
        if ":" not in seg:
            segments.append(seg)
            continue
        kinds: list[str] = []
        names: list[str] = []
        for ep in group:
            kind, name = ep.pattern[pos].split(":", 1)
            kinds += [kind] if kind not in kinds else []
            names += [name] if name not in names else []
        name = "_or_".join(names)
        segments.append(f"{{{name}}}")
        schemas = [_PLACEHOLDERS[k] for k in kinds]
        schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return "/" + "/".join(segments), params


def _any_of(schemas: Iterable[Schema]) -> Schema:
    distinct: list[Schema] = []
    for s in schemas:
        if s not in distinct:
            distinct.append(s)
    return distinct[0] if len(distinct) == 1 else {"anyOf": distinct}


def _get(group: Sequence[Endpoint], path_params: list[Schema], shared: dict[str, Schema]) -> Schema:
    """The GET of endpoints of one shape; query parameters go to ``shared`` (the components)
    and are referred to, as every path of a resource type takes the same ones."""
    collection = any(ep.collection is not None for ep in group)
    rtypes = {ep.rtype.name: ep.rtype for ep in group}
    query: dict[str, Schema] = {}  # by name: a parameter name appears once in an operation
    properties = any(ep.properties is not None for ep in group)
    for rtype in rtypes.values():
        for param in _query_parameters(rtype, collection=collection, properties=properties):
            key = f"{rtype.name}.{param['name']}"
            shared[key] = param
            query.setdefault(param["name"], {"$ref": f"#/components/parameters/{key}"})
    ok = _any_of({"$ref": f"#/components/schemas/{_envelope_name(ep)}"} for ep in group)
    what = " or ".join(rtypes)
    return {
        "summary": f"{'A collection of' if collection else 'One'} {what}",
        "parameters": path_params + list(query.values()),
        "responses": {
            "200": {
                "description": "The items in the REST envelope.",
                "content": {t: {"schema": ok} for t in _REPLY_TYPES},
            },
            "400": _error("A bad query argument."),
            "403": _error(_FORBIDDEN),
            "404": _error("No such path or item."),
        },
    }


def _raw(path_params: list[Schema], *, inline: bool) -> Schema:
    text = {"type": "string"}
    return {
        "summary": "The log's text" + (" (inline)" if inline else " as a download"),
        "parameters": path_params,
        "responses": {
            "200": {
                "description": "The text; stdio logs have a preamble and no stream letters.",
                "content": {"text/plain": {"schema": text}, "text/html": {"schema": text}},
            },
            "403": _error(_FORBIDDEN),
            "404": _error("No such log."),
        },
    }


def _download(path_params: list[Schema]) -> Schema:
    return {
        "summary": "The value's bytes as a download",
        "parameters": path_params,
        "responses": {
            "200": {
                "description": "The bytes, as an attachment named after the value.",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            "400": _error("A bad query argument."),
            "403": _error(_FORBIDDEN),
            "404": _error("No such path or value."),
        },
    }


def _post(rtype: ResourceType, path_params: list[Schema]) -> Schema:
    methods = list(ACTIONS[rtype.name])
    request = {
        "type": "object",
        "required": ["jsonrpc", "method", "id", "params"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "method": {"enum": methods},
            "id": {"type": ["string", "integer", "null"]},
            "params": {"$ref": "#/components/schemas/ActionParams"},
        },
    }
    return {
        "summary": f"Control a {rtype.name}: {', '.join(methods)}",
        "parameters": path_params,
        "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
        "responses": {
            "200": {
                "description": "Done: `result` is null, or `[bsid, {builderid: brid}]`.",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/RpcResult"}}
                },
            },
            **{
                status: {
                    "description": description,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/RpcError"}}
                    },
                }
                for status, description in (
                    ("400", "A bad request (-32700, -32600) or parameters (-32602)."),
                    ("403", _FORBIDDEN + " (-32600)."),
                    ("404", "No such path or entity (-32600)."),
                    ("408", "The body did not arrive within 60 s (-32600)."),
                    ("413", "The body is over 1 MiB (-32600)."),
                    ("501", "An action the entity has not (-32601)."),
                )
            },
        },
    }


_COMPONENTS: Mapping[str, Schema] = {
    "CollectionMeta": {
        "type": "object",
        "properties": {"total": {**_COUNT, "description": "Matches before offset/limit."}},
        "additionalProperties": False,
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
        "additionalProperties": False,
    },
    "ActionParams": {
        "type": "object",
        "description": "The action's parameters; a force scheduler takes one per field.",
        "properties": {
            "reason": {"type": "string"},
            "priority": {"type": "integer"},
            "enabled": {"type": "boolean"},
        },
    },
    "RpcResult": {
        "type": "object",
        "required": ["jsonrpc", "id", "result"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["string", "integer", "null"]},
            "result": {
                "anyOf": [
                    {"type": "null"},
                    {
                        # [bsid, {builderid: brid}] (not prefixItems: schemathesis 4 rewrites
                        # those to draft 4 ``items``, then rejects them)
                        "type": "array",
                        "items": {
                            "anyOf": [
                                {"type": "integer"},
                                {"type": "object", "additionalProperties": {"type": "integer"}},
                            ]
                        },
                        "minItems": 2,
                        "maxItems": 2,
                    },
                ]
            },
        },
        "additionalProperties": False,
    },
    "RpcError": {
        "type": "object",
        "required": ["jsonrpc", "error"],
        "properties": {
            "jsonrpc": {"const": "2.0"},
            "id": {"type": ["string", "integer", "null"]},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "integer"},
                    # a force scheduler's field errors: {fullName: message}
                    "message": {
                        "anyOf": [
                            {"type": "string"},
                            {"type": "object", "additionalProperties": {"type": "string"}},
                        ]
                    },
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
}


def document(endpoints: Iterable[Endpoint], *, title: str = "buildyard") -> Schema:
    """The OpenAPI 3.1 description of the REST API that serves ``endpoints``."""
    groups: dict[tuple[str, ...], list[Endpoint]] = {}
    for ep in endpoints:
        if not ep.pattern:
            # the root (``/api/v2`` itself, its root links) has no template below the server URL
            continue
        groups.setdefault(_path_shape(ep.pattern), []).append(ep)
    paths: dict[str, Schema] = {}
    schemas: dict[str, Schema] = dict(_COMPONENTS)
    parameters: dict[str, Schema] = {}
    for group in groups.values():
        template, path_params = _template(group)
        if all(ep.raw is not None for ep in group):
            paths[template] = {"get": _download(path_params)}
            continue
        item: Schema = {"get": _get(group, path_params, parameters)}
        for ep in group:
            schemas[_component(ep.rtype)] = _entity_schema(ep.rtype)
            schemas[_envelope_name(ep)] = _envelope(ep)
        actionable = [ep.rtype for ep in group if ep.item is not None and ep.rtype.name in ACTIONS]
        if actionable:
            item["post"] = _post(actionable[0], path_params)
        paths[template] = item
        if any(ep.rtype.name == "log" and ep.item is not None for ep in group):
            paths[f"{template}/raw"] = {"get": _raw(path_params, inline=False)}
            paths[f"{template}/raw_inline"] = {"get": _raw(path_params, inline=True)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{title} REST API",
            "version": "2",
            "description": "Buildbot's data API over HTTP, as buildyard serves it.",
        },
        "servers": [{"url": "/api/v2"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "parameters": dict(sorted(parameters.items())),
        },
    }


async def get(request: web.Request) -> web.Response:
    doc = document(request.app[rest.DATA_API].endpoints)
    return web.json_response(doc)


def routes() -> list[web.RouteDef]:
    """The description's route; it goes before :func:`rest.routes`, whose paths it shadows."""
    return [web.get("/api/v2/openapi.json", get)]

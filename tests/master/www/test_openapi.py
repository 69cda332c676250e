"""GET /api/v2/openapi.json: a valid OpenAPI 3.1 document covering every endpoint the data API
has, computed from the endpoints themselves (tests/e2e/test_openapi_fuzz.py checks it against
a running master's replies)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate
from schemathesis.core.result import Ok

from buildyard.master.data.api import DataAPI
from buildyard.master.data.resources import forceschedulers
from buildyard.master.data.resources.base import (
    STR,
    Endpoint,
    Item,
    ResourceType,
    list_of,
    nullable,
)
from buildyard.master.data.resultspec import FieldType
from buildyard.master.db.connector import Database
from buildyard.master.www import openapi
from buildyard.master.www.app import make_app
from buildyard.testing.clock import FakeClock

Client = TestClient[web.Request, web.Application]
# a value for each kind of placeholder, and the pattern of a template's parameter
_SAMPLES = {"n": "7", "i": "some_name", "s": "any name"}
_TEMPLATE_PARAM = re.compile(r"\{[a-z0-9_]+\}")


async def _no_widget(_db: Database, _kw: Mapping[str, Any]) -> Item | None:
    return None


WIDGET = ResourceType(
    name="widget",
    plural="widgets",
    fields={"widgetid": FieldType.INTEGER, "tags": FieldType.OTHER, "note": FieldType.STRING},
    json={"tags": list_of(STR), "note": nullable(STR)},
)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[DataAPI]:
    """The data API with what the master registers (the force schedulers); the description
    reads no database."""
    db = Database(f"sqlite:///{tmp_path / 'state.sqlite'}", clock=FakeClock())
    api = DataAPI(db=db)
    api.register(*forceschedulers.endpoints(list))
    try:
        yield api
    finally:
        await db.close()


@pytest.fixture
async def client(api: DataAPI) -> AsyncIterator[Client]:
    async with TestClient(TestServer(make_app(data=api, title="t"), host="127.0.0.1")) as c:
        yield c


async def _document(client: Client) -> dict[str, Any]:
    resp = await client.get("/api/v2/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    doc: dict[str, Any] = await resp.json()
    return doc


def _sample(ep: Endpoint) -> str:
    """A concrete path the endpoint matches."""
    segments = [_SAMPLES[s.split(":")[0]] if ":" in s else s for s in ep.pattern]
    return "/" + "/".join(segments)


def _template_for(doc: dict[str, Any], path: str) -> str:
    """The one path template of ``doc`` that ``path`` fits (literal segments win)."""

    def pattern(template: str) -> str:
        return "/".join(
            "[^/]+" if _TEMPLATE_PARAM.fullmatch(s) else re.escape(s) for s in template.split("/")
        )

    fits: list[str] = [t for t in doc["paths"] if re.fullmatch(pattern(t), path)]
    literal = [t for t in fits if "{" not in t]
    assert len(literal or fits) == 1, (path, fits)
    return (literal or fits)[0]


async def test_the_document_is_valid_openapi(client: Client) -> None:
    doc = await _document(client)
    validate(doc)  # raises on any error
    assert doc["openapi"].startswith("3.1")
    # schemathesis reads every operation of it
    schema = schemathesis.openapi.from_dict(doc)
    results = list(schema.get_all_operations())
    assert results
    assert all(isinstance(r, Ok) for r in results), [r for r in results if not isinstance(r, Ok)]


async def test_every_endpoint_is_described(client: Client, api: DataAPI) -> None:
    doc = await _document(client)
    schemas = doc["components"]["schemas"]
    assert api.endpoints
    for ep in api.endpoints:
        if not ep.pattern:  # the root links, /api/v2 itself: no template below the server URL
            assert "/" not in doc["paths"]
            continue
        template = _template_for(doc, _sample(ep))
        operations = doc["paths"][template]
        if ep.raw is not None:  # a download (a build's data value): bytes
            content = operations["get"]["responses"]["200"]["content"]
            assert set(content) == {"application/octet-stream"}
            continue
        ok = operations["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        kind = "Collection" if ep.collection is not None else "Item"
        envelope = f"#/components/schemas/{ep.rtype.name.capitalize()}{kind}"
        assert envelope in str(ok), (template, ok)
        entity = schemas[ep.rtype.name.capitalize()]
        if ep.rtype.entity is None:
            assert set(entity["properties"]) == set(ep.rtype.fields)
        if ep.item is not None and ep.rtype.name in openapi.ACTIONS:
            body = operations["post"]["requestBody"]["content"]["application/json"]["schema"]
            assert body["properties"]["method"]["enum"] == list(openapi.ACTIONS[ep.rtype.name])
        if ep.item is not None and ep.rtype.name == "log":
            assert {f"{template}/raw", f"{template}/raw_inline"} <= set(doc["paths"])


async def test_query_parameters_follow_the_fields(client: Client) -> None:
    doc = await _document(client)
    params = doc["components"]["parameters"]
    assert params["build.number__lt"]["schema"]["type"] == "integer"
    assert params["build.complete"]["schema"]["items"]["enum"][:2] == ["on", "true"]
    assert params["build.field"]["schema"]["items"]["enum"] == sorted(
        doc["components"]["schemas"]["Build"]["properties"]
    )
    get = doc["paths"]["/builds/{buildid}"]["get"]
    # one build: only ``field`` and ``property``; filters on it are a 400
    assert [p.get("$ref") for p in get["parameters"][1:]] == [
        "#/components/parameters/build.field",
        "#/components/parameters/build.property",
    ]
    # a list field's filters take its elements
    assert params["builder.masterids__contains"]["schema"]["items"]["type"] == "integer"
    assert params["builder.tags__contains"]["schema"]["items"]["type"] == "string"
    assert set(get["responses"]) == {"200", "400", "403", "404"}
    [path_param] = doc["paths"]["/builders/{builderid_or_name}"]["get"]["parameters"][:1]
    assert path_param["in"] == "path"
    assert len(path_param["schema"]["anyOf"]) == 2


async def test_a_new_resource_type_is_described_when_registered(api: DataAPI) -> None:
    api.register(Endpoint(pattern=("widgets", "n:widgetid"), rtype=WIDGET, item=_no_widget))
    doc = openapi.document(api.endpoints)
    validate(doc)
    assert "/widgets/{widgetid}" in doc["paths"]
    widget = doc["components"]["schemas"]["Widget"]["properties"]
    assert widget == {
        "widgetid": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "note": {"type": ["string", "null"]},
    }

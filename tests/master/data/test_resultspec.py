"""REST query arguments -> result specs (docs/rest-api.md, "Query arguments")."""

from __future__ import annotations

import pytest

from buildyard.master.data.errors import InvalidQuery
from buildyard.master.data.resultspec import FieldType, parse

FIELDS = {
    "masterid": FieldType.INTEGER,
    "name": FieldType.STRING,
    "active": FieldType.BOOLEAN,
    "last_active": FieldType.DATETIME,
}
ITEMS = [
    {"masterid": 1, "name": "b", "active": True, "last_active": 30},
    {"masterid": 2, "name": "a", "active": False, "last_active": 10},
    {"masterid": 3, "name": "c", "active": True, "last_active": None},
]


def test_filters_order_and_paging() -> None:
    spec = parse({"active": ["true"], "order": ["-name"]}, FIELDS)
    assert [i["name"] for i in spec.apply(ITEMS)[0]] == ["c", "b"]
    spec = parse(
        {"masterid__gt": ["1"], "limit": ["1"], "offset": ["1"], "order": ["name"]}, FIELDS
    )
    page, total = spec.apply(ITEMS)
    assert (total, [i["masterid"] for i in page]) == (2, [3])
    spec = parse({"masterid": ["1", "3"]}, FIELDS)
    assert [i["masterid"] for i in spec.apply(ITEMS)[0]] == [1, 3]
    spec = parse({"name__contains": ["a"]}, FIELDS)
    assert [i["masterid"] for i in spec.apply(ITEMS)[0]] == [2]


def test_none_sorts_first_ascending() -> None:
    spec = parse({"order": ["last_active"]}, FIELDS)
    assert [i["masterid"] for i in spec.apply(ITEMS)[0]] == [3, 2, 1]


def test_field_selection() -> None:
    spec = parse({"field": ["name", "active"], "active": ["1"]}, FIELDS)
    assert spec.apply(ITEMS)[0] == [{"name": "b", "active": True}, {"name": "c", "active": True}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"bogus": ["1"]}, "unrecognized query parameter 'bogus'"),
        ({"field": ["nope"]}, "no such field 'nope'"),
        ({"masterid": ["x"]}, "invalid integer value 'x' for field 'masterid'"),
        ({"active": ["maybe"]}, "invalid boolean value 'maybe'"),
        ({"limit": ["-1"]}, "invalid limit .-1.: out of range"),
        ({"order": ["nope"]}, "no such field 'nope'"),
        ({"field": ["name"], "active": ["1"]}, "'active' is used in a filter"),
        ({"masterid__lt": ["1", "2"]}, "takes one value"),
        ({"name": ["a\x00b"]}, "a NUL character"),
    ],
)
def test_bad_queries_say_what_is_wrong(args: dict[str, list[str]], message: str) -> None:
    with pytest.raises(InvalidQuery, match=message):
        parse(args, FIELDS)


def test_unknown_double_underscore_is_ignored_like_buildbot() -> None:
    assert parse({"nope__eq": ["1"], "name__bogus": ["x"]}, FIELDS).filters == ()


def test_pushdown_only_when_every_field_is_a_column() -> None:
    spec = parse({"active": ["1"], "order": ["-name"], "limit": ["2"]}, FIELDS)
    pushed = spec.query_options(["active", "name"])
    assert pushed is not None
    options, _rest = pushed
    assert options.order == ("-name",) and options.limit == 2
    assert spec.query_options(["name"]) is None


@pytest.mark.parametrize(
    "args",
    [
        {"masterid": ["99999999999999999999"]},
        {"last_active__gt": ["-99999999999999999999"]},
        {"limit": ["99999999999999999999"]},
    ],
)
def test_integers_no_column_can_hold_are_refused(args: dict[str, list[str]]) -> None:
    with pytest.raises(InvalidQuery, match="out of range"):
        parse(args, FIELDS)


def test_comparing_a_list_with_a_string_matches_nothing() -> None:
    fields = {**FIELDS, "tags": FieldType.OTHER}
    items = [{**i, "tags": ["x"]} for i in ITEMS]
    assert parse({"tags__ge": ["x"]}, fields).apply(items) == ([], 0)
    assert len(parse({"tags__contains": ["x"]}, fields).apply(items)[0]) == 3


def test_ordering_by_a_list_field_is_stable_not_an_error() -> None:
    """A buildset's ``sourcestamps`` (a list of objects) has no order of its own: ordering by it
    sorts by its JSON text, alongside other keys (a 500 before: lists of dicts do not compare)."""
    fields = {**FIELDS, "sourcestamps": FieldType.OTHER}
    items = [
        {**ITEMS[0], "sourcestamps": [{"ssid": 2, "branch": None}]},
        {**ITEMS[1], "sourcestamps": [{"ssid": 1, "branch": "main"}]},
        {**ITEMS[2], "sourcestamps": [{"ssid": 1, "branch": "main"}]},
    ]
    spec = parse({"order": ["sourcestamps", "-name"]}, fields)
    # by the JSON text (keys sorted: "branch" first, "main" before null), then by -name
    assert [i["masterid"] for i in spec.apply(items)[0]] == [3, 2, 1]

"""util.ChangeFilter: each kind of test on each attribute, properties, and the checks of its
arguments."""

from __future__ import annotations

import re
from typing import Any

import pytest

from buildyard.common.errors import ConfigError
from buildyard.master.schedulers.change import ChangeView
from buildyard.master.schedulers.changefilter import NOT_A_BRANCH, ChangeFilter


def change(**kw: Any) -> dict[str, Any]:
    """A change in its API shape (an event body)."""
    body: dict[str, Any] = {
        "changeid": 7,
        "author": "alice <alice@example.com>",
        "committer": None,
        "files": ["b.c", "a.c"],
        "comments": "fix it",
        "revision": "abc",
        "when_timestamp": 1_700_000_000,
        "branch": "main",
        "category": "bugfix",
        "revlink": "",
        "properties": {"ci": ["yes", "Change"]},
        "repository": "https://example.com/r.git",
        "project": "proj",
        "codebase": "cb",
        "sourcestamp": {"ssid": 3},
    }
    body.update(kw)
    return body


def cf(**kw: Any) -> ChangeFilter:
    """A filter of arguments computed by the test."""
    return ChangeFilter(**kw)


ATTRIBUTES = ["project", "repository", "branch", "category", "codebase"]


@pytest.mark.parametrize("attr", ATTRIBUTES)
def test_value_and_list_of_values(attr: str) -> None:
    value = change()[attr]
    assert cf(**{attr: value}).filter_change(change())
    assert cf(**{attr: ["other", value]}).filter_change(change())
    assert not cf(**{attr: "other"}).filter_change(change())


@pytest.mark.parametrize("attr", ATTRIBUTES)
def test_not_eq(attr: str) -> None:
    value = change()[attr]
    assert not cf(**{f"{attr}_not_eq": value}).filter_change(change())
    assert cf(**{f"{attr}_not_eq": ["x", "y"]}).filter_change(change())


@pytest.mark.parametrize("attr", ATTRIBUTES)
def test_re_matches_at_the_start(attr: str) -> None:
    value: str = change()[attr]
    assert cf(**{f"{attr}_re": re.escape(value[:3])}).filter_change(change())
    assert cf(**{f"{attr}_re": re.compile(re.escape(value))}).filter_change(change())
    assert cf(**{f"{attr}_re": ["^zzz", re.escape(value)]}).filter_change(change())
    # re.match: anchored at the start, not a search
    assert not cf(**{f"{attr}_re": re.escape(value[1:])}).filter_change(change())


@pytest.mark.parametrize("attr", ATTRIBUTES)
def test_not_re(attr: str) -> None:
    value: str = change()[attr]
    assert not cf(**{f"{attr}_not_re": re.escape(value)}).filter_change(change())
    assert cf(**{f"{attr}_not_re": "^zzz"}).filter_change(change())


@pytest.mark.parametrize("attr", ATTRIBUTES)
def test_fn_gets_the_value(attr: str) -> None:
    seen: list[object] = []

    def fn(value: object) -> bool:
        seen.append(value)
        return value == "nope"

    assert not cf(**{f"{attr}_fn": fn}).filter_change(change())
    assert seen == [change()[attr]]
    assert cf(**{f"{attr}_fn": lambda v: True}).filter_change(change())


def test_a_missing_category_matches_no_expression_and_passes_an_exclusion() -> None:
    assert not ChangeFilter(category_re=".*").filter_change(change(category=None))
    assert ChangeFilter(category_not_re=".*").filter_change(change(category=None))
    assert not ChangeFilter(category="bugfix").filter_change(change(category=None))


def test_branch_none_is_the_default_branch() -> None:
    assert ChangeFilter(branch=None).filter_change(change(branch=None))
    assert not ChangeFilter(branch=None).filter_change(change(branch="main"))
    assert ChangeFilter(branch=[None, "main"]).filter_change(change(branch="main"))
    assert not ChangeFilter(branch_not_eq=None).filter_change(change(branch=None))
    # not given at all: no test on the branch
    assert ChangeFilter(branch=NOT_A_BRANCH).filter_change(change(branch="anything"))
    assert not NOT_A_BRANCH


def test_filter_fn_gets_buildbots_change_object() -> None:
    got: list[Any] = []

    def fn(ch: Any) -> bool:
        got.append(ch)
        return "a.c" in ch.files and ch.properties.getProperty("ci") == "yes"

    assert ChangeFilter(filter_fn=fn).filter_change(change())
    ch = got[0]
    assert isinstance(ch, ChangeView)
    assert (ch.number, ch.who, ch.files, ch.when) == (
        7,
        "alice <alice@example.com>",
        ["a.c", "b.c"],
        1_700_000_000,
    )
    assert ch.properties.hasProperty("ci") and ch.properties["ci"] == "yes"
    assert not ChangeFilter(filter_fn=lambda c: False).filter_change(change())


def test_every_filter_given_must_pass() -> None:
    f = ChangeFilter(branch="main", project="proj", category_not_eq="docs")
    assert f.filter_change(change())
    assert not f.filter_change(change(project="other"))
    assert not f.filter_change(change(category="docs"))


def test_property_filters() -> None:
    assert ChangeFilter(property_eq={"ci": "yes"}).filter_change(change())
    assert ChangeFilter(property_eq={"ci": ["no", "yes"]}).filter_change(change())
    assert not ChangeFilter(property_eq={"ci": "no"}).filter_change(change())
    assert not ChangeFilter(property_eq={"missing": "x"}).filter_change(change())
    assert not ChangeFilter(property_not_eq={"ci": "yes"}).filter_change(change())
    assert ChangeFilter(property_re={"ci": "^y"}).filter_change(change())
    assert not ChangeFilter(property_not_re={"ci": "^y"}).filter_change(change())


def test_a_change_view_is_accepted_too() -> None:
    assert ChangeFilter(branch="main").filter_change(ChangeView.from_api(change()))


def test_equal_arguments_make_equal_filters() -> None:
    assert ChangeFilter(branch="main") == ChangeFilter(branch="main")
    assert ChangeFilter(branch="main") != ChangeFilter(branch="dev")
    assert repr(ChangeFilter(branch="main", project_re="^p")) == (
        "<ChangeFilter on project matches ['^p'] and branch in ['main']>"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"project": 5}, "ChangeFilter: project must be a string or a list of strings, not int"),
        ({"category": ["a", 3]}, "ChangeFilter: category must be a string or a list of strings"),
        ({"branch": 5}, "ChangeFilter: branch must be a string or a list of strings (None:"),
        ({"repository_re": "("}, "ChangeFilter: repository_re '(' is not a regular expression"),
        ({"codebase_re": 5}, "ChangeFilter: codebase_re must be a regular expression"),
        ({"branch_fn": "main"}, "ChangeFilter: branch_fn must be a function, not str"),
        ({"filter_fn": 1}, "ChangeFilter: filter_fn must be a function, not int"),
        ({"property_eq": ["x"]}, "ChangeFilter: property_eq must be a dict"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        cf(**kwargs)
    assert info.value.message.startswith(message)


def test_from_scheduler_constructor_args() -> None:
    given = ChangeFilter(project="p")
    assert ChangeFilter.fromSchedulerConstructorArgs(change_filter=given) is given
    assert ChangeFilter.fromSchedulerConstructorArgs() is None
    made = ChangeFilter.fromSchedulerConstructorArgs(branch="main", categories=["bugfix"])
    assert made is not None and made.filter_change(change())
    assert not made.filter_change(change(category="docs"))
    with pytest.raises(ConfigError, match="cannot specify both change_filter and branch"):
        ChangeFilter.fromSchedulerConstructorArgs(change_filter=given, branch="main")

"""The generators' filters and mode words on build dicts (no IO), and the pieces of the
formatters' context."""

from __future__ import annotations

from typing import Any

import pytest

from buildyard.common.errors import ConfigErrors, collecting_config_errors
from buildyard.master.model.results import Results
from buildyard.master.reporters.generators import BuildStatusGenerator, expand_mode
from buildyard.master.reporters.github import owner_and_repo, pull_request_number
from buildyard.master.reporters.message import sourcestamps_text, status_detected


def _build(results: Results, prev: Results | None = None, **props: Any) -> dict[str, Any]:
    return {
        "results": results,
        "builder": {"name": props.pop("builder", "b"), "tags": props.pop("tags", [])},
        "properties": {k: [v, "test"] for k, v in props.items()},
        "prev_build": None if prev is None else {"results": prev},
    }


def test_mode_words() -> None:
    assert expand_mode("all") == ("failing", "passing", "warnings", "exception", "cancelled")
    assert expand_mode("warnings") == ("failing", "warnings")
    assert expand_mode(("change",)) == ("change",)


@pytest.mark.parametrize(
    ("mode", "results", "prev", "wanted"),
    [
        ("failing", Results.FAILURE, None, True),
        ("failing", Results.SUCCESS, None, False),
        ("passing", Results.SUCCESS, None, True),
        ("warnings", Results.FAILURE, None, True),
        ("warnings", Results.WARNINGS, None, True),
        (("warnings",), Results.FAILURE, None, False),
        ("exception", Results.EXCEPTION, None, True),
        ("cancelled", Results.CANCELLED, None, True),
        ("all", Results.SKIPPED, None, False),
        ("change", Results.SUCCESS, Results.FAILURE, True),
        ("change", Results.SUCCESS, Results.SUCCESS, False),
        ("change", Results.FAILURE, None, False),
        ("problem", Results.FAILURE, Results.SUCCESS, True),
        ("problem", Results.FAILURE, Results.FAILURE, False),
        ("problem", Results.FAILURE, None, False),
    ],
)
def test_results_filter(mode: Any, results: Results, prev: Results | None, wanted: bool) -> None:
    g = BuildStatusGenerator(mode=mode)
    assert g.is_message_needed_by_results(_build(results, prev)) is wanted


def test_property_filters() -> None:
    by_tag = BuildStatusGenerator(tags=["red"])
    assert by_tag.is_message_needed_by_props(_build(Results.SUCCESS, tags=["red", "x"]))
    assert not by_tag.is_message_needed_by_props(_build(Results.SUCCESS, tags=["green"]))
    by_builder = BuildStatusGenerator(builders=["a"])
    assert by_builder.is_message_needed_by_props(_build(Results.SUCCESS, builder="a"))
    assert not by_builder.is_message_needed_by_props(_build(Results.SUCCESS, builder="b"))
    by_branch = BuildStatusGenerator(branches=["main"], schedulers=["s"])
    assert by_branch.is_message_needed_by_props(
        _build(Results.SUCCESS, branch="main", scheduler="s")
    )
    assert not by_branch.is_message_needed_by_props(
        _build(Results.SUCCESS, branch="dev", scheduler="s")
    )


def test_bad_arguments_are_reported_together() -> None:
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        BuildStatusGenerator(mode="sometimes", tags="red", builders=["a"])  # type: ignore[arg-type]
    text = " ".join(str(e) for e in errors.errors)
    assert "mode 'sometimes' is not a valid mode" in text
    assert "tags must be a list" in text
    assert "not both" in text


def test_status_text() -> None:
    assert status_detected(("change",), Results.FAILURE, Results.SUCCESS) == "new failure"
    assert status_detected(("failing",), Results.FAILURE, Results.SUCCESS) == "failed build"
    assert status_detected(("change",), Results.SUCCESS, Results.FAILURE) == "restored build"
    assert status_detected((), Results.SKIPPED, None) == "skipped build"
    stamp: dict[str, Any] = {"branch": "dev", "revision": None, "patch": {}, "codebase": "cb"}
    assert sourcestamps_text([stamp]) == "Build Source Stamp 'cb': [branch dev] HEAD (plus patch)\n"


@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("https://github.com/octo/hello.git", ("octo", "hello")),
        ("git@github.com:octo/hello.git", ("octo", "hello")),
        ("ssh://git@github.example:2222/org/team/repo", ("org/team", "repo")),
        ("https://github.com/justone", (None, None)),
    ],
)
def test_owner_and_repo(url: str, found: tuple[str | None, str | None]) -> None:
    assert owner_and_repo(url) == found


def test_pull_request_number() -> None:
    assert pull_request_number("refs/pull/42/merge") == "42"
    assert pull_request_number("main") is None

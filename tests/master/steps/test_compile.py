"""WarningCountingShellCommand's parts on their own: suppression rules (from suppressionList
entries and suppressionFile text), make's directory tracking, and the counting of a log's lines.
A build that runs them on real workers is in test_shellsteps.py."""

from __future__ import annotations

import re
from typing import Any

import pytest

from buildyard.common.errors import ConfigError
from buildyard.master.steps.compile import (
    Compile,
    DirectoryTracker,
    FoundWarning,
    SuppressionRule,
    WarningCountingShellCommand,
    _WarningCounter,
    parse_suppressions,
)

# -- suppression files ----------------------------------------------------------------------------


def test_a_suppression_file_becomes_rules() -> None:
    text = (
        "# a comment\n"
        "\n"
        "   b.c : deprecated : 5-15\n"
        "x.c : unused: var : 7\n"  # the warning pattern may hold colons; 7 is the range
        "y.c : note: 12abc\n"  # not a range: part of the warning pattern
        "z.c:w : 3 - 4\n"
    )
    rules, problems = parse_suppressions(text)
    assert problems == []
    shown = [(r.file.pattern, r.text.pattern, r.lines) for r in rules if r.file and r.text]
    assert shown == [
        ("b.c", "deprecated", range(5, 16)),
        ("x.c", "unused: var", range(7, 8)),
        ("y.c", "note: 12abc", None),
        ("z.c", "w", range(3, 5)),
    ]


def test_lines_that_are_not_rules_are_reported_not_applied() -> None:
    rules, problems = parse_suppressions("ok.c : fine\nno colon\n : no file\nf.c :   \na( : b\n")
    assert [r.file.pattern for r in rules if r.file] == ["ok.c"]
    assert problems[:3] == [
        "line 2: 'no colon' is not 'file-regexp : warning-regexp [: start[-end]]'",
        "line 3: ' : no file' is not 'file-regexp : warning-regexp [: start[-end]]'",
        "line 4: 'f.c :   ' is not 'file-regexp : warning-regexp [: start[-end]]'",
    ]
    assert problems[3].startswith("line 5: 'a( : b': missing ), unterminated subpattern")
    assert len(problems) == 4


# -- rules ----------------------------------------------------------------------------------------


def warning(file: str | None, line: int | None, text: str = "warning: x") -> FoundWarning:
    return FoundWarning(file, line, text)


def test_what_a_rule_covers() -> None:
    rule = SuppressionRule.from_entry((r"lib/.*\.c", "unused", 10, 12))
    assert rule.covers(warning("lib/a.c", 11, "unused variable"))
    assert not rule.covers(warning("lib/a.c", 13, "unused variable"))  # outside the lines
    assert not rule.covers(warning("lib/a.c", None, "unused variable"))  # no line to check
    assert not rule.covers(warning("src/lib/a.c", 11, "unused"))  # the file matches from its start
    assert not rule.covers(warning("lib/a.c", 11, "deprecated"))
    # a warning whose file is unknown is judged by its text (and line) only
    assert rule.covers(warning(None, 10, "x unused"))


def test_missing_parts_of_an_entry_match_anything() -> None:
    assert SuppressionRule.from_entry((None, None, None, None)).covers(warning("f", None))
    # a range needs both ends: one alone means no range, as in Buildbot
    half = SuppressionRule.from_entry(("f", re.compile("x"), 3, None))
    assert half.lines is None and half.covers(warning("f", 99))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (("f", "w"), "expected (file-regexp, warning-regexp, start, end)"),
        ("f : w", "expected (file-regexp, warning-regexp, start, end)"),
        (("f", "(", None, None), "'(' is not valid: missing )"),
        (("f", 3, None, None), "3 is not a regular expression"),
        (("f", "w", "1", "2"), "start and end must be line numbers or None"),
    ],
)
def test_a_bad_suppression_list_entry_is_a_config_error(entry: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        SuppressionRule.from_entry(entry)
    with pytest.raises(ConfigError, match=re.escape(f"suppressionList: suppression {entry!r}")):
        Compile(suppressionList=[entry])


# -- directories ----------------------------------------------------------------------------------


def test_make_directories_are_followed() -> None:
    step = Compile()
    tracker = DirectoryTracker(
        re.compile(step.directoryEnterPattern), re.compile(step.directoryLeavePattern)
    )
    assert not tracker.moved("make: Leaving directory '/nowhere'")  # nothing to leave
    assert tracker.moved("make[1]: Entering directory '/src'")
    assert tracker.moved("make[2]: Entering directory \u2018lib\u2019")  # GNU make's quotes
    assert tracker.qualify("a.c") == "/src/lib/a.c"
    assert tracker.qualify(None) is None
    assert tracker.moved("make[2]: Leaving directory 'lib'")
    assert tracker.qualify("b.c") == "/src/b.c"
    assert not tracker.moved("b.c:1: warning: x")


# -- counting -------------------------------------------------------------------------------------


def test_counting_skips_suppressed_warnings_and_directory_lines() -> None:
    step = WarningCountingShellCommand(
        command="make",
        warningPattern=r"^(.*?):(\d+): warning: (.*)$",
        warningExtractor=WarningCountingShellCommand.warnExtractFromRegexpGroups,
    )
    step.addSuppression([(r"/src/lib/", "unused", None, None), ("b.c", None, 10, 10)])
    counter = _WarningCounter(step, re.compile(step.warningPattern))
    for line in [
        "make[1]: Entering directory '/src/lib'",
        "a.c:3: warning: unused variable",  # /src/lib/a.c: suppressed
        "make[1]: Leaving directory '/src/lib'",
        "b.c:10: warning: deprecated",  # suppressed by its line
        "b.c:11: warning: deprecated",
        "all done",
    ]:
        counter("stdout", line)
    assert step.loggedWarnings == ["b.c:11: warning: deprecated"]
    assert step.warnCount == 1


def test_the_extractor_runs_only_when_something_may_be_suppressed() -> None:
    seen: list[str] = []

    def extractor(step: Any, line: str, match: re.Match[str]) -> tuple[None, None, str]:
        seen.append(line)
        return (None, None, line)

    step = WarningCountingShellCommand(command="make", warningExtractor=extractor)
    counter = _WarningCounter(step, re.compile(step.warningPattern))
    counter("stderr", "x: warning: one")
    assert (seen, step.warnCount) == ([], 1)
    step.addSuppression([(None, "two", None, None)])
    counter("stderr", "x: warning: two")
    assert (seen, step.warnCount) == (["x: warning: two"], 1)

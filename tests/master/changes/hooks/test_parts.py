"""The pieces of the hooks on their own: the request handlers get, times, a handler's change
dict turned into add_change's keywords, and the credential checkers."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from buildyard.common.jsontext import replace_lone_surrogates
from buildyard.master.changes.hooks.base import BadChange, change_arguments, field, timestamp
from buildyard.master.changes.hooks.credentials import (
    FilePasswordDB,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from buildyard.master.changes.hooks.request import HookError, HookRequest


def _request(body: bytes, content_type: str, query: str = "") -> HookRequest:
    return HookRequest(
        method="POST",
        path="/change_hook/base",
        query_string=query,
        headers={"Content-Type": content_type, "X-Thing": "yes"},
        body=body,
    )


def test_request_arguments_from_query_and_forms() -> None:
    req = _request(b"a=1&a=2&b=", "application/x-www-form-urlencoded", "a=0&c=3")
    assert req.args == {b"a": [b"0", b"1", b"2"], b"c": [b"3"], b"b": [b""]}
    assert (req.uri, req.path, req.method) == (
        b"/change_hook/base?a=0&c=3",
        b"/change_hook/base",
        b"POST",
    )
    assert req.getHeader(b"x-thing") == b"yes"
    assert req.getHeader("X-Missing") is None
    assert req.content.read() == b"a=1&a=2&b="
    multipart = (
        b'--XyZ\r\nContent-Disposition: form-data; name="poller"\r\n\r\none\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="poller"\r\n\r\ntwo\r\n--XyZ--\r\n'
    )
    req = _request(multipart, "multipart/form-data; boundary=XyZ")
    assert req.args == {b"poller": [b"one", b"two"]}
    # JSON bodies are not form fields
    assert _request(b'{"a": 1}', "application/json", "x=1").args == {b"x": [b"1"]}


def test_a_form_body_gives_its_fields_as_the_bytes_sent() -> None:
    """As Twisted's parse_qs: raw bytes over 0x7f (``curl -d author=José``), ``%FF`` and
    valid ``%C3%A9`` all come through as the bytes sent, not a 400; ``+`` is a space, ``;``
    separates items like ``&``, and an item without ``=`` is dropped."""
    raw = "author=Jos\u00e9&comments=ok".encode()
    req = _request(raw, "application/x-www-form-urlencoded")
    assert req.args == {b"author": ["Jos\u00e9".encode()], b"comments": [b"ok"]}
    assert req.arg("author") == "Jos\u00e9"
    req = _request(
        b"a=\xff&b=%FF&c=Jos%C3%A9;d=x+y&bare&e=1=2", "application/x-www-form-urlencoded"
    )
    assert req.args == {
        b"a": [b"\xff"],
        b"b": [b"\xff"],
        b"c": ["Jos\u00e9".encode()],
        b"d": [b"x y"],
        b"e": [b"1=2"],
    }
    # the query is parsed the same way, once: it is given as sent, escapes and all
    req = _request(b"author=%FF", "application/x-www-form-urlencoded", "who=%FF&c=%C3%A9%E2%98%83")
    assert req.args == {
        b"who": [b"\xff"],
        b"c": ["\u00e9\u2603".encode()],
        b"author": [b"\xff"],
    }


def test_query_escapes_are_undone_once() -> None:
    """``?x=%2541`` is ``b"%41"`` as in Twisted, not ``b"A"`` (decoded twice)."""
    req = _request(b"", "application/x-www-form-urlencoded", "x=%2541&y=a+b%2B")
    assert req.args == {b"x": [b"%41"], b"y": [b"a b+"]}
    assert req.uri == b"/change_hook/base?x=%2541&y=a+b%2B"


def test_timestamps() -> None:
    assert timestamp("2024-05-02T10:11:00+02:00", "t") == 1714637460
    assert timestamp("2024-06-11T08:30:00Z", "t") == 1718094600
    assert timestamp("2024-02-05 10:00:00+00:00", "t") == 1707127200
    assert timestamp("2024-02-05T10:00:00", "t") == 1707127200  # no offset: UTC
    for bad in ("yesterday", 1707127200, None):
        with pytest.raises(HookError, match="ISO 8601"):
            timestamp(bad, "t")


def test_a_forge_time_the_database_cannot_hold_is_none_with_a_warning() -> None:
    """Past 2038 or before 1901 (32-bit epoch seconds): the change is stamped now, not the
    whole push refused; the log says which hook and what value."""
    assert timestamp("2038-01-19T03:14:07Z", "t") == 2**31 - 1
    assert timestamp("1901-12-13T20:45:52Z", "t") == -(2**31)
    with capture_logs() as logs:
        assert timestamp("2040-01-01T00:00:00Z", "gitlab") is None
        assert timestamp("1900-01-01T00:00:00Z", "github") is None
    assert [(e["event"], e["log_level"], e["hook"], e["value"]) for e in logs] == [
        ("change_time_out_of_range", "warning", "gitlab", "2040-01-01T00:00:00Z"),
        ("change_time_out_of_range", "warning", "github", "1900-01-01T00:00:00Z"),
    ]


def test_field_names_the_missing_path() -> None:
    payload = {"repository": {"links": {"self": [{"href": "x"}]}}}
    assert field(payload, "repository", "links", "self", 0, "href") == "x"
    with pytest.raises(HookError, match=r"^the payload has no 'repository\.links\.html'$"):
        field(payload, "repository", "links", "html", "href")
    with pytest.raises(HookError, match=r"'repository\.links\.self\.1'"):
        field(payload, "repository", "links", "self", 1)


def test_change_arguments() -> None:
    when = datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.UTC)
    args = change_arguments(
        {
            "author": b"A <a@example.org>",
            "files": [b"x.c", "y.c"],
            "when_timestamp": when,
            "properties": {"event": "push", b"raw": 1},
            "category": lambda change: f"cat-{change['branch']}",
            "branch": "main",
            "codebase": None,
        }
    )
    assert args == {
        "author": "A <a@example.org>",
        "comments": "",
        "repository": "",
        "project": "",
        "files": ["x.c", "y.c"],
        "when_timestamp": 1704110400,
        "properties": {"event": ("push", "Change"), "raw": (1, "Change")},
        "category": "cat-main",
        "branch": "main",
        "codebase": None,
    }
    with pytest.raises(BadChange, match="keys addChange does not take: who"):
        change_arguments({"who": "a"})
    with pytest.raises(BadChange, match="no author"):
        change_arguments({"revision": "r"})
    with pytest.raises(BadChange, match="'branch' is int"):
        change_arguments({"author": "a", "branch": 3})
    # a handler's time the database cannot hold: named, not an OverflowError from the driver
    for bad_when in (float("inf"), float("nan"), 2**31, 10**30):
        with pytest.raises(BadChange, match="is not epoch seconds the database can hold"):
            change_arguments({"author": "a", "when_timestamp": bad_when})


def test_credential_checkers(tmp_path: Path) -> None:
    memory = InMemoryUsernamePasswordDatabaseDontUse(alice="pw")
    assert memory.check("alice", "pw")
    assert not memory.check("alice", "PW")
    assert not memory.check("bob", "pw")
    passwd = tmp_path / "hooks.passwd"
    passwd.write_text("# comment\nhook:s3:cret\nother\n")
    db = FilePasswordDB(passwd)
    assert not db.check("hook", "s3:cret")  # the second field only, as Twisted splits
    assert db.check("hook", "s3")
    passwd.write_text("hook:new\n")  # read at each check
    assert db.check("hook", "new")
    passwd.unlink()
    assert not db.check("hook", "new")


def test_lone_surrogates_are_replaced_without_recursion() -> None:
    """Each lone surrogate (in a value or a key) becomes U+FFFD and its path is reported;
    nesting deeper than Python's recursion limit is walked all the same."""
    deep: list[Any] = ["x\udfff"]
    for _ in range(5000):
        deep = [deep]
    value = {"a": ["ok", "b\ud800"], "k\udc00": {"c": 1}, "deep": deep}
    fixed, found = replace_lone_surrogates(value)
    assert sorted(found) == ["<key>", "a[1]", "deep" + "[0]" * 5001]
    assert fixed["a"] == ["ok", "b\ufffd"]
    assert fixed["k\ufffd"] == {"c": 1}
    inner = fixed["deep"]
    for _ in range(5000):
        inner = inner[0]
    assert inner == ["x\ufffd"]
    assert replace_lone_surrogates("a\ud800") == ("a\ufffd", [""])
    assert replace_lone_surrogates({"ok": ["text"]}) == ({"ok": ["text"]}, [])

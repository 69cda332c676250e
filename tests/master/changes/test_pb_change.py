"""What PBChangeSource makes of the dict a client's ``addChange`` sends (the whole path, with
the stock and our sendchange, is in tests/e2e/test_sendchange.py)."""

from __future__ import annotations

import pytest

from buildyard.master.changes.pb import _read_change
from buildyard.protocol.pb import CallFailed


def test_old_names_bytes_and_the_prefix() -> None:
    fields = _read_change(
        {
            b"who": b"ada",
            "when": 1700000000.5,
            "files": [b"trunk/a.c", "branches/x/a.c", "trunk/", "trunk/d/b.c"],
            "properties": {b"color": b"blue", "n": 3},
            "revlink": None,
            "repository": None,
            "src": "git",
            "links": ["http://x"],
        },
        "trunk/",
    )
    assert fields["author"] == "ada"
    assert fields["when_timestamp"] == 1700000000
    assert fields["files"] == ["a.c", "", "d/b.c"]
    assert fields["properties"] == {"color": ("blue", "Change"), "n": (3, "Change")}
    assert (fields["revlink"], fields["repository"], fields["project"]) == ("", "", "")
    assert fields["comments"] == ""
    assert fields["src"] == "git" and "links" not in fields
    assert _read_change({"who": "ada", "files": ["trunk/a.c"]}, None)["files"] == ["trunk/a.c"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"files": []}, "no author"),
        ({"who": "ada", "colour": "red"}, "unknown fields colour"),
        ({"who": "ada", "when": "noon"}, "when must be a Unix time"),
        ({"who": "ada", "files": "a.c"}, "files must be a list"),
        ({"who": "ada", "branch": 3}, "branch must be a string"),
        ({"who": "ada", "properties": ["a"]}, "properties must be a dict"),
    ],
)
def test_a_malformed_change_is_refused_naming_the_field(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(CallFailed, match=message):
        _read_change(change, None)

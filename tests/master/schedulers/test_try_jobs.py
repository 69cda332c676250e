"""Try_Jobdir's job files, as Buildbot's try client writes them (versions 1 to 6); the stock
client end to end is in tests/e2e/test_try.py."""

from __future__ import annotations

import base64
import json

import pytest

from buildyard.master.schedulers.trysched import BadJobfile, parse_job


def ns(*strings: bytes) -> bytes:
    return b"".join(b"%d:%s," % (len(s), s) for s in strings)


DIFF = b"--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-two\n+three\n"


def test_version_4_netstrings() -> None:
    job = parse_job(
        ns(b"4", b"j1", b"", b"abc", b"1", DIFF, b"repo", b"proj", b"ada", b"fog", b"b", b"c")
    )
    assert job["jobid"] == "j1"
    assert job["branch"] is None
    assert (job["baserev"], job["patch_level"], job["patch_body"]) == ("abc", 1, DIFF)
    assert (job["repository"], job["project"], job["who"], job["comment"]) == (
        "repo",
        "proj",
        "ada",
        "fog",
    )
    assert job["builderNames"] == ["b", "c"]
    assert job["properties"] == {}
    assert parse_job(ns(b"1", b"j", b"main", b"", b"0", DIFF, b"b"))["builderNames"] == ["b"]


@pytest.mark.parametrize("version", ["5", "6"])
def test_versions_5_and_6_json(version: str) -> None:
    fields = {
        "jobid": "j2",
        "branch": "main",
        "baserev": "abc",
        "patch_level": 1,
        "repository": "r",
        "project": "p",
        "who": "ada",
        "comment": "",
        "builderNames": ["b"],
        "properties": {"color": "blue"},
    }
    if version == "5":
        fields["patch_body"] = DIFF.decode()
    else:
        fields["patch_body_base64"] = base64.b64encode(DIFF + b"\xff").decode()
    job = parse_job(ns(version.encode(), json.dumps(fields).encode()))
    assert job["patch_body"] == (DIFF if version == "5" else DIFF + b"\xff")
    assert job["properties"] == {"color": "blue"}
    assert (job["branch"], job["builderNames"]) == ("main", ["b"])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "could not find any complete netstrings"),
        (b"1:5,4:{}", "cut short"),
        (b"x:5,", "no length"),
        (ns(b"9"), "unknown version '9'"),
        (ns(b"2", b"j", b"b"), "version 2 job has 7 fields"),
        (ns(b"5", b"{nope"), "unable to parse JSON"),
        (ns(b"6", b'{"builderNames": ["b"]}'), "patch is missing"),
        (ns(b"5", b'{"patch_body": "", "builderNames": "b"}'), "builderNames must be a list"),
        (ns(b"5", b'{"patch_body": "", "patch_level": "x", "builderNames": []}'), "patch_level"),
    ],
)
def test_bad_job_files_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(BadJobfile, match=reason):
        parse_job(data)

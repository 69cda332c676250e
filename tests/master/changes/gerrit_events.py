"""Gerrit events shaped as ``gerrit stream-events`` prints them (Gerrit's documented JSON:
accounts, ``change``, ``patchSet``, ``refUpdate``, ``eventCreatedOn`` in seconds)."""

from __future__ import annotations

from typing import Any

PROJECT = "octo/hello"
OLD = "1111111111111111111111111111111111111111"
REV1 = "0123456789abcdef0123456789abcdef01234567"
REV2 = "89abcdef0123456789abcdef0123456789abcdef"
ANN = {"name": "Ann Author", "email": "ann@example.org", "username": "ann"}
BOB = {"name": "Bob Reviewer", "email": "bob@example.org", "username": "bob"}
NAMELESS = {"username": "ci"}


def change(number: int = 12345, *, status: str = "NEW", branch: str = "main") -> dict[str, Any]:
    return {
        "project": PROJECT,
        "branch": branch,
        "topic": "fixes",
        "id": "I0123456789abcdef0123456789abcdef01234567",
        "number": number,
        "subject": "Fix the frobnicator",
        "owner": ANN,
        "url": f"https://gerrit.example.org/c/{PROJECT}/+/{number}",
        "commitMessage": "Fix the frobnicator\n\nChange-Id: I0123456789abcdef\n",
        "createdOn": 1_700_000_000,
        "status": status,
    }


def patchset(number: int = 2, revision: str = REV1, change_number: int = 12345) -> dict[str, Any]:
    return {
        "number": number,
        "revision": revision,
        "parents": [OLD],
        "ref": f"refs/changes/{change_number % 100:02d}/{change_number}/{number}",
        "uploader": ANN,
        "createdOn": 1_700_000_100,
        "author": ANN,
        "kind": "REWORK",
        "sizeInsertions": 3,
        "sizeDeletions": -1,
    }


def patchset_created(ts: int, **kwargs: Any) -> dict[str, Any]:
    return {
        "uploader": ANN,
        "patchSet": patchset(**kwargs),
        "change": change(),
        "project": PROJECT,
        "refName": "refs/heads/main",
        "changeKey": {"id": "I0123456789abcdef0123456789abcdef01234567"},
        "type": "patchset-created",
        "eventCreatedOn": ts,
    }


def comment_added(ts: int) -> dict[str, Any]:
    return {
        "author": BOB,
        "approvals": [
            {"type": "Code-Review", "description": "Code-Review", "value": "2", "oldValue": "0"}
        ],
        "comment": "Patch Set 2: Code-Review+2\n\nLooks good.",
        "patchSet": patchset(),
        "change": change(),
        "project": PROJECT,
        "refName": "refs/heads/main",
        "changeKey": {"id": "I0123456789abcdef0123456789abcdef01234567"},
        "type": "comment-added",
        "eventCreatedOn": ts,
    }


def change_merged(ts: int) -> dict[str, Any]:
    return {
        "submitter": BOB,
        "newRev": REV2,
        "patchSet": patchset(),
        "change": change(status="MERGED"),
        "project": PROJECT,
        "refName": "refs/heads/main",
        "changeKey": {"id": "I0123456789abcdef0123456789abcdef01234567"},
        "type": "change-merged",
        "eventCreatedOn": ts,
    }


def ref_updated(
    ts: int, ref: str = "refs/heads/main", *, submitter: dict[str, Any] | None = BOB
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "refUpdate": {"oldRev": OLD, "newRev": REV2, "refName": ref, "project": PROJECT},
        "type": "ref-updated",
        "eventCreatedOn": ts,
    }
    if submitter is not None:
        event["submitter"] = submitter
    return event


def query_answer(change_number: int = 12345) -> list[dict[str, Any]]:
    """What ``gerrit query <n> --format JSON --files --patch-sets`` prints: the change, then
    the statistics line."""
    files = [
        {"file": "/COMMIT_MSG", "type": "ADDED", "insertions": 9, "deletions": 0},
        {"file": "src/frob.c", "type": "MODIFIED", "insertions": 3, "deletions": -1},
    ]
    return [
        {
            **change(change_number),
            "patchSets": [
                {**patchset(1), "files": files[:1]},
                {**patchset(2), "files": files},
            ],
        },
        {"type": "stats", "rowCount": 1, "runTimeMilliseconds": 3, "moreChanges": False},
    ]

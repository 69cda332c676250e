"""Webhook payloads shaped as the forges document them (GitHub's push and pull_request events,
GitLab's push, tag push, merge request and note events, Bitbucket Cloud's repo:push and
pullrequest:*, the Bitbucket Server webhooks plugin's, Bitbucket's old POST service and
Gitorious'), written for these tests with made-up repositories, people and hashes."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SHA = [hashlib.sha1(f"commit {i}".encode()).hexdigest() for i in range(12)]
ZERO = "0" * 40


def sign(body: bytes, secret: str, algorithm: str = "sha256") -> str:
    digest = hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).hexdigest()
    return f"{algorithm}={digest}"


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


# -- GitHub ------------------------------------------------------------------------------------

GH_REPO = {
    "id": 4815162342,
    "node_id": "R_kgDOHtdjrg",
    "name": "lighthouse",
    "full_name": "harbor/lighthouse",
    "private": False,
    "owner": {
        "name": "harbor",
        "email": None,
        "login": "harbor",
        "id": 1001,
        "type": "Organization",
    },
    "html_url": "https://github.com/harbor/lighthouse",
    "description": "Keeps the light on",
    "fork": False,
    "url": "https://github.com/harbor/lighthouse",
    "clone_url": "https://github.com/harbor/lighthouse.git",
    "git_url": "git://github.com/harbor/lighthouse.git",
    "ssh_url": "git@github.com:harbor/lighthouse.git",
    "default_branch": "main",
    "master_branch": "main",
    "stargazers": 3,
    "topics": ["ci", "light"],
}
GH_SENDER = {"login": "mira-k", "id": 2002, "type": "User", "site_admin": False}


def gh_commit(i: int, message: str, *, files: dict[str, list[str]] | None = None) -> dict[str, Any]:
    files = files or {"added": [f"src/new_{i}.py"], "removed": [], "modified": ["README.md"]}
    return {
        "id": SHA[i],
        "tree_id": SHA[i][::-1],
        "distinct": True,
        "message": message,
        "timestamp": f"2024-05-0{1 + i % 9}T10:1{i % 10}:00+02:00",
        "url": f"https://github.com/harbor/lighthouse/commit/{SHA[i]}",
        "author": {"name": "Mira Kowal", "email": "mira@example.org", "username": "mira-k"},
        "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
        **files,
    }


def gh_push(
    ref: str = "refs/heads/main",
    commits: list[dict[str, Any]] | None = None,
    *,
    created: bool = False,
    deleted: bool = False,
    forced: bool = False,
) -> dict[str, Any]:
    if commits is None:
        commits = [
            gh_commit(1, "Add the lamp driver"),
            gh_commit(2, "Dim at dawn\n\nThe sensor reads lux now."),
            gh_commit(
                3,
                "Fix the rotation speed",
                files={"added": [], "removed": ["old.c"], "modified": ["rot.c", "rot.h"]},
            ),
        ]
    return {
        "ref": ref,
        "before": ZERO if created else SHA[0],
        "after": ZERO if deleted else (commits[-1]["id"] if commits else SHA[0]),
        "created": created,
        "deleted": deleted,
        "forced": forced,
        "base_ref": None,
        "compare": f"https://github.com/harbor/lighthouse/compare/{SHA[0][:12]}...{SHA[3][:12]}",
        "commits": commits,
        "head_commit": None if deleted else (commits[-1] if commits else None),
        "repository": GH_REPO,
        "pusher": {"name": "mira-k", "email": "mira@example.org"},
        "sender": GH_SENDER,
    }


def gh_pull_request(action: str = "opened", number: int = 42, commits: int = 3) -> dict[str, Any]:
    base_repo = {**GH_REPO}
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "url": f"https://api.github.com/repos/harbor/lighthouse/pulls/{number}",
            "id": 900000 + number,
            "html_url": f"https://github.com/harbor/lighthouse/pull/{number}",
            "number": number,
            "state": "open" if action != "closed" else "closed",
            "locked": False,
            "title": "Blink in fog",
            "user": {"login": "oskar-b", "id": 3003, "type": "User"},
            "body": "Fog mode blinks twice a second.\r\nCloses #7.",
            "created_at": "2024-06-11T08:30:00Z",
            "updated_at": "2024-06-12T09:00:00Z",
            "merged": False,
            "draft": False,
            "commits": commits,
            "additions": 40,
            "deletions": 2,
            "changed_files": 2,
            "labels": [{"name": "feature"}],
            "head": {
                "label": "oskar-b:fog",
                "ref": "fog",
                "sha": SHA[7],
                "user": {"login": "oskar-b"},
                "repo": {**GH_REPO, "full_name": "oskar-b/lighthouse"},
            },
            "base": {
                "label": "harbor:main",
                "ref": "main",
                "sha": SHA[6],
                "user": {"login": "harbor"},
                "repo": base_repo,
            },
            "_links": {
                "self": {"href": f"https://api.github.com/repos/harbor/lighthouse/pulls/{number}"},
                "html": {"href": f"https://github.com/harbor/lighthouse/pull/{number}"},
            },
        },
        "repository": GH_REPO,
        "sender": {"login": "oskar-b", "id": 3003, "type": "User"},
    }


# what the fake GitHub API answers for the pull request above
GH_PR_FILES = [
    {"filename": "src/fog.c", "status": "added"},
    {"filename": "src/blink.c", "status": "renamed", "previous_filename": "src/flash.c"},
]
GH_PR_HEAD_MESSAGE = "Blink twice a second in fog"

# -- GitLab ------------------------------------------------------------------------------------

GL_REPOSITORY = {
    "name": "tidewatch",
    "url": "git@gitlab.example.com:coast/tidewatch.git",
    "description": "Tide tables",
    "homepage": "https://gitlab.example.com/coast/tidewatch",
    "git_http_url": "https://gitlab.example.com/coast/tidewatch.git",
    "git_ssh_url": "git@gitlab.example.com:coast/tidewatch.git",
    "visibility_level": 20,
}
GL_PROJECT = {
    "id": 77,
    "name": "tidewatch",
    "web_url": "https://gitlab.example.com/coast/tidewatch",
    "git_ssh_url": "git@gitlab.example.com:coast/tidewatch.git",
    "git_http_url": "https://gitlab.example.com/coast/tidewatch.git",
    "namespace": "coast",
    "path_with_namespace": "coast/tidewatch",
    "default_branch": "main",
}


def gl_commit(i: int, message: str) -> dict[str, Any]:
    return {
        "id": SHA[i],
        "message": message,
        "title": message.splitlines()[0],
        "timestamp": f"2024-03-1{i % 10}T07:0{i % 10}:30+01:00",
        "url": f"https://gitlab.example.com/coast/tidewatch/-/commit/{SHA[i]}",
        "author": {"name": "Ines Moreau", "email": "ines@example.net"},
        "added": [f"tables/{i}.csv"],
        "modified": ["index.md"],
        "removed": [],
    }


def gl_push(
    kind: str = "push",
    ref: str = "refs/heads/main",
    commits: list[dict[str, Any]] | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    if commits is None:
        commits = [
            gl_commit(1, "Add March tables"),
            gl_commit(2, "Round to minutes\n\nSeconds were noise."),
        ]
    return {
        "object_kind": kind,
        "event_name": kind,
        "before": SHA[0],
        "after": after or (commits[-1]["id"] if commits else SHA[0]),
        "ref": ref,
        "checkout_sha": commits[-1]["id"] if commits else None,
        "user_id": 12,
        "user_name": "Ines Moreau",
        "user_username": "imoreau",
        "user_email": "",
        "project_id": 77,
        "project": GL_PROJECT,
        "repository": GL_REPOSITORY,
        "commits": commits,
        "total_commits_count": len(commits),
    }


def gl_merge_request(action: str = "open", state: str = "opened", **extra: Any) -> dict[str, Any]:
    side = {
        "name": "tidewatch",
        "namespace": "coast",
        "web_url": "https://gitlab.example.com/coast/tidewatch",
        "git_ssh_url": "git@gitlab.example.com:coast/tidewatch.git",
        "git_http_url": "https://gitlab.example.com/coast/tidewatch.git",
        "path_with_namespace": "coast/tidewatch",
    }
    fork = {
        **side,
        "namespace": "ines",
        "git_ssh_url": "git@gitlab.example.com:ines/tidewatch.git",
        "git_http_url": "https://gitlab.example.com/ines/tidewatch.git",
    }
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {"id": 12, "name": "Ines Moreau", "username": "imoreau"},
        "project": GL_PROJECT,
        "repository": {
            "name": "tidewatch",
            "url": GL_REPOSITORY["url"],
            "homepage": GL_REPOSITORY["homepage"],
        },
        "object_attributes": {
            "id": 501,
            "iid": 9,
            "target_branch": "main",
            "source_branch": "neap-tides",
            "source_project_id": 78,
            "target_project_id": 77,
            "title": "Neap tide warnings",
            "description": "Warn a day ahead.",
            "state": state,
            "action": action,
            "merge_status": "can_be_merged",
            "url": "https://gitlab.example.com/coast/tidewatch/-/merge_requests/9",
            "source": fork,
            "target": side,
            "last_commit": {
                "id": SHA[9],
                "message": "Warn about neap tides",
                "timestamp": "2024-03-20T12:00:00+01:00",
                "url": f"https://gitlab.example.com/coast/tidewatch/-/commit/{SHA[9]}",
                "author": {"name": "Ines Moreau", "email": "ines@example.net"},
            },
            **extra,
        },
    }


# -- Bitbucket Cloud ---------------------------------------------------------------------------

BBC_REPO = {
    "type": "repository",
    "name": "sailplan",
    "full_name": "fleet/sailplan",
    "uuid": "{5a1e0000-0000-4000-8000-000000000001}",
    "scm": "git",
    "is_private": True,
    "links": {
        "self": {"href": "https://api.bitbucket.org/2.0/repositories/fleet/sailplan"},
        "html": {"href": "https://bitbucket.org/fleet/sailplan"},
        "avatar": {"href": "https://bytebucket.org/ravatar/sailplan"},
    },
    "project": {"type": "project", "name": "Fleet Tools", "key": "FT", "uuid": "{0f0f}"},
    "owner": {"type": "team", "display_name": "Fleet", "uuid": "{0e0e}"},
}
BBC_ACTOR = {"type": "user", "display_name": "Tove Lind", "nickname": "tlind", "uuid": "{7a7a}"}


def _bbc_ref(kind: str, name: str, sha: str) -> dict[str, Any]:
    return {
        "type": kind,
        "name": name,
        "target": {
            "type": "commit",
            "hash": sha,
            "message": "Trim the jib\n",
            "date": "2024-02-02T16:00:00+00:00",
        },
        "links": {"html": {"href": f"https://bitbucket.org/fleet/sailplan/branch/{name}"}},
    }


def bbc_push() -> dict[str, Any]:
    return {
        "actor": BBC_ACTOR,
        "repository": BBC_REPO,
        "push": {
            "changes": [
                {
                    "new": _bbc_ref("branch", "main", SHA[4]),
                    "old": _bbc_ref("branch", "main", SHA[3]),
                    "created": False,
                    "forced": False,
                    "closed": False,
                    "truncated": False,
                    "commits": [{"hash": SHA[4]}],
                },
                {
                    "new": _bbc_ref("tag", "v2.1", SHA[4]),
                    "old": None,
                    "created": True,
                    "forced": False,
                    "closed": False,
                    "truncated": False,
                    "commits": [],
                },
                {
                    "new": None,
                    "old": _bbc_ref("branch", "old-rigging", SHA[2]),
                    "created": False,
                    "forced": False,
                    "closed": True,
                    "truncated": False,
                    "commits": [],
                },
                {
                    "new": _bbc_ref("branch", "storm", SHA[5]),
                    "old": _bbc_ref("branch", "storm", SHA[1]),
                    "created": False,
                    "forced": True,
                    "closed": False,
                    "truncated": False,
                    "commits": [{"hash": SHA[5]}],
                },
            ]
        },
    }


def bbc_pull_request(number: int = 14) -> dict[str, Any]:
    """Bitbucket Cloud's pullrequest:* payload (source/destination, links.html)."""
    return {
        "actor": BBC_ACTOR,
        "repository": BBC_REPO,
        "pullrequest": {
            "type": "pullrequest",
            "id": number,
            "title": "Reef the main earlier",
            "description": "At 18 knots.",
            "state": "OPEN",
            "author": BBC_ACTOR,
            "source": {
                "branch": {"name": "reefing"},
                "commit": {"hash": SHA[8][:12]},
                "repository": BBC_REPO,
            },
            "destination": {
                "branch": {"name": "main"},
                "commit": {"hash": SHA[4][:12]},
                "repository": BBC_REPO,
            },
            "links": {
                "self": {
                    "href": f"https://api.bitbucket.org/2.0/repositories/fleet/sailplan/pullrequests/{number}"
                },
                "html": {"href": f"https://bitbucket.org/fleet/sailplan/pull-requests/{number}"},
            },
            "created_on": "2024-02-03T10:00:00.000000+00:00",
        },
    }


# -- Bitbucket Server (the "Bitbucket Server Web Post Hooks" plugin's format) --------------------

BBS_REPO = {
    "scmId": "git",
    "project": {"key": "OPS", "name": "Operations"},
    "slug": "beacon",
    "links": {"self": [{"href": "https://bitbucket.example.com/projects/OPS/repos/beacon/browse"}]},
    "ownerName": "OPS",
    "public": False,
    "owner": {"name": "OPS", "displayName": "OPS"},
    "fullName": "OPS/beacon",
}
BBS_ACTOR = {"username": "jdoe", "displayName": "Jo Doe"}


def bbs_push() -> dict[str, Any]:
    def ref(kind: str, name: str, sha: str) -> dict[str, Any]:
        return {"type": kind, "name": name, "target": {"type": "commit", "hash": sha}}

    return {
        "actor": BBS_ACTOR,
        "repository": BBS_REPO,
        "push": {
            "changes": [
                {
                    "created": False,
                    "closed": False,
                    "old": ref("branch", "main", SHA[1]),
                    "new": ref("branch", "main", SHA[2]),
                },
                {"created": True, "closed": False, "old": None, "new": ref("tag", "r7", SHA[2])},
                {
                    "created": False,
                    "closed": True,
                    "old": ref("branch", "spike", SHA[3]),
                    "new": None,
                },
            ]
        },
    }


def bbs_pull_request(number: int = 3) -> dict[str, Any]:
    def side(branch: str, sha: str) -> dict[str, Any]:
        return {
            "repository": {
                "fullName": "OPS/beacon",
                "slug": "beacon",
                "project": {"key": "OPS", "name": "Operations"},
            },
            "branch": {"name": branch, "rawNode": sha},
            "commit": {
                "message": "Signal at dusk",
                "date": "2024-01-08T09:00:00+00:00",
                "hash": sha,
                "authorTimestamp": 1704704400,
            },
        }

    return {
        "actor": BBS_ACTOR,
        "pullrequest": {
            "id": str(number),
            "title": "Dusk signal",
            "link": f"https://bitbucket.example.com/projects/OPS/repos/beacon/pull-requests/{number}",
            "authorLogin": "Jo Doe",
            "fromRef": side("dusk", SHA[10]),
            "toRef": side("main", SHA[2]),
        },
        "repository": BBS_REPO,
    }


# -- Bitbucket's old POST service, Gitorious ----------------------------------------------------


def bitbucket_post() -> dict[str, Any]:
    return {
        "canon_url": "https://bitbucket.org",
        "repository": {
            "absolute_url": "/fleet/charts/",
            "name": "charts",
            "owner": "fleet",
            "scm": "git",
            "slug": "charts",
            "website": "",
        },
        "user": "tlind",
        "commits": [
            {
                "author": "tlind",
                "branch": "main",
                "files": [
                    {"file": "north.svg", "type": "modified"},
                    {"file": "south.svg", "type": "added"},
                ],
                "message": "Redraw the north chart\n",
                "node": SHA[5][:12],
                "parents": [SHA[4][:12]],
                "raw_author": "Tove Lind <tove@example.se>",
                "raw_node": SHA[5],
                "revision": None,
                "size": -1,
                "timestamp": "2024-02-05 11:00:00",
                "utctimestamp": "2024-02-05 10:00:00+00:00",
            },
            {
                "author": "tlind",
                "branch": "main",
                "files": [{"file": "legend.txt", "type": "removed"}],
                "message": "Drop the legend",
                "node": SHA[6][:12],
                "parents": [SHA[5][:12]],
                "raw_author": "Tove Lind <tove@example.se>",
                "raw_node": SHA[6],
                "revision": None,
                "size": -1,
                "timestamp": "2024-02-05 11:05:00",
                "utctimestamp": "2024-02-05 10:05:00+00:00",
            },
        ],
    }


def gitorious_push(after: str | None = None) -> dict[str, Any]:
    return {
        "after": after or SHA[11],
        "before": SHA[10],
        "ref": "main",
        "pushed_at": "2012-09-01T10:00:00+02:00",
        "pushed_by": "vera",
        "project": {"name": "quay", "description": "Mooring plans"},
        "repository": {
            "name": "quay-mainline",
            "url": "https://gitorious.example.org/quay/quay-mainline",
            "description": "",
            "clones": 2,
            "owner": {"name": "vera"},
        },
        "commits": [
            {
                "id": SHA[10],
                "author": {"name": "Vera Holm", "email": "vera@example.fi"},
                "committed_at": "2012-09-01T09:58:00+02:00",
                "message": "Moor at berth 4",
                "timestamp": "2012-09-01T09:58:00+02:00",
                "url": f"https://gitorious.example.org/quay/quay-mainline/commit/{SHA[10]}",
            },
            {
                "id": SHA[11],
                "author": {"name": "Vera Holm", "email": "vera@example.fi"},
                "committed_at": "2012-09-01T09:59:00+02:00",
                "message": "Moor at berth 5",
                "timestamp": "2012-09-01T09:59:00+02:00",
                "url": f"https://gitorious.example.org/quay/quay-mainline/commit/{SHA[11]}",
            },
        ],
    }

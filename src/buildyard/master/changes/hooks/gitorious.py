"""The ``gitorious`` dialect: a push as Gitorious posted it (a form field ``payload``)."""

from __future__ import annotations

import re

from buildyard.master.changes.hooks.base import (
    BaseHookHandler,
    Changes,
    field,
    parse_json,
    timestamp,
)
from buildyard.master.changes.hooks.request import HookRequest

OPTIONS: frozenset[str] = frozenset()


class GitoriousHandler(BaseHookHandler):
    async def getChanges(self, request: HookRequest) -> Changes:
        form = request.args.get(b"payload") or [b"{}"]
        payload = parse_json(form[0], "gitorious")
        repo_url = field(payload, "repository", "url")
        project = field(payload, "project", "name")
        branch = field(payload, "ref")
        if re.match(r"^0*$", str(field(payload, "after"))):
            return [], "git"  # the branch was deleted
        changes = [
            {
                "author": f"{field(c, 'author', 'name')} <{field(c, 'author', 'email')}>",
                # Gitorious does not say which files a commit touched
                "files": [],
                "comments": field(c, "message"),
                "revision": field(c, "id"),
                "when_timestamp": timestamp(field(c, "timestamp"), "gitorious"),
                "branch": branch,
                "revlink": field(c, "url"),
                "repository": repo_url,
                "project": project,
            }
            for c in field(payload, "commits")
        ]
        return changes, "git"

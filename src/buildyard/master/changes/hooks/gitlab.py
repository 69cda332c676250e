"""The ``gitlab`` dialect: GitLab's push, tag push, merge request and merge request note
events, checked against the ``secret`` option with the ``X-Gitlab-Token`` header.

``?codebase=`` and ``?project=`` on the hook's URL set those fields of the changes.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

import structlog

from buildyard.master.changes.hooks.base import (
    BaseHookHandler,
    Changes,
    field,
    parse_json,
    timestamp,
)
from buildyard.master.changes.hooks.request import HookError, HookRequest

log = structlog.get_logger(__name__)

OPTIONS = frozenset({"secret"})
_REF = re.compile(r"^refs/(heads|tags)/(.+)$")


def _author(commit: Any) -> str:
    author = field(commit, "author")
    return f"{field(author, 'name')} <{field(author, 'email')}>"


def _mr_properties(mr: Any, event: str) -> dict[str, Any]:
    source, target = field(mr, "source"), field(mr, "target")
    return {
        "source_branch": field(mr, "source_branch"),
        "source_project_id": field(mr, "source_project_id"),
        "source_repository": field(source, "git_http_url"),
        "source_git_ssh_url": field(source, "git_ssh_url"),
        "target_branch": field(mr, "target_branch"),
        "target_project_id": field(mr, "target_project_id"),
        "target_repository": field(target, "git_http_url"),
        "target_git_ssh_url": field(target, "git_ssh_url"),
        "event": event,
    }


class GitLabHandler(BaseHookHandler):
    """``buildbot.www.hooks.gitlab.GitLabHandler``."""

    async def getChanges(self, request: HookRequest) -> Changes:
        options = self.options if isinstance(self.options, dict) else {}
        expected = options.get("secret")
        if expected:
            expected = str(await self.render_option(expected))
            received = request.header("X-Gitlab-Token") or ""
            if not hmac.compare_digest(received.encode(), expected.encode()):
                raise HookError("Invalid secret")
        payload = parse_json(request.body(), "gitlab")
        if not isinstance(payload, dict):
            raise HookError("the payload is not a JSON object")
        event = payload.get("object_kind", request.header("X-Gitlab-Event"))
        codebase = request.arg("codebase")
        project = request.arg("project")
        if event in ("push", "tag_push", "Push Hook"):
            changes = self._process_change(payload, event, codebase)
        elif event == "merge_request":
            changes = self._process_merge_request_change(payload, event, codebase)
        elif event == "note":
            changes = self._process_note_addition_to_merge_request(payload, event, codebase)
        else:
            log.info("change_hook_event_ignored", hook="gitlab", forge_event=event)
            changes = []
        if project:
            for change in changes:
                change["project"] = project
        return changes, "git"

    def _process_change(self, payload: Any, event: str, codebase: str | None) -> list[Any]:
        ref = field(payload, "ref")
        project = field(payload, "repository", "name")
        repo_url = field(payload, "repository", "url")
        match = _REF.match(ref) if isinstance(ref, str) else None
        if match is None:
            log.info("change_hook_ref_ignored", hook="gitlab", ref=ref, reason="not a branch")
            return []
        branch = match.group(2)
        if payload.get("deleted"):
            log.info("change_hook_ref_ignored", hook="gitlab", ref=ref, reason="deleted")
            return []
        changes = []
        for commit in field(payload, "commits"):
            if not commit.get("distinct", True):
                continue
            files: list[str] = []
            for kind in ("added", "modified", "removed"):
                files.extend(commit.get(kind, []))
            change = {
                "author": _author(commit),
                "files": files,
                "comments": field(commit, "message"),
                "revision": field(commit, "id"),
                "when_timestamp": timestamp(field(commit, "timestamp"), "gitlab"),
                "branch": branch,
                "revlink": field(commit, "url"),
                "repository": repo_url,
                "project": project,
                "category": event,
                "properties": {"event": event},
            }
            if codebase is not None:
                change["codebase"] = codebase
            changes.append(change)
        return changes

    def _merge_request_change(
        self, mr: Any, event: str, codebase: str | None, **extra: Any
    ) -> dict[str, Any]:
        commit = field(mr, "last_commit")
        change = {
            "author": _author(commit),
            "files": [],
            "comments": f"MR#{field(mr, 'iid')}: {field(mr, 'title')}\n\n{mr.get('description')}",
            "revision": field(commit, "id"),
            "when_timestamp": timestamp(field(commit, "timestamp"), "gitlab"),
            "branch": field(mr, "target_branch"),
            "repository": field(mr, "target", "git_http_url"),
            "project": field(mr, "target", "name"),
            "category": event,
            "revlink": field(mr, "url"),
            "properties": {**_mr_properties(mr, event), **extra},
        }
        if codebase is not None:
            change["codebase"] = codebase
        return change

    def _process_merge_request_change(
        self, payload: Any, event: str, codebase: str | None
    ) -> list[Any]:
        attrs = field(payload, "object_attributes")
        state, action = field(attrs, "state"), attrs.get("action")
        if state in ("closed", "merged", "approved"):
            log.info("change_hook_merge_request_ignored", hook="gitlab", state=state)
            return []
        if action not in ("open", "reopen") and not (action == "update" and "oldrev" in attrs):
            log.info("change_hook_merge_request_ignored", hook="gitlab", action=action)
            return []
        return [self._merge_request_change(attrs, event, codebase)]

    def _process_note_addition_to_merge_request(
        self, payload: Any, event: str, codebase: str | None
    ) -> list[Any]:
        if "merge_request" not in payload:
            log.info("change_hook_note_ignored", hook="gitlab", reason="not on a merge request")
            return []
        note = field(payload, "object_attributes", "note")
        mr = field(payload, "merge_request")
        return [self._merge_request_change(mr, event, codebase, comments=note)]

"""The Bitbucket dialects: ``bitbucket`` (the old POST service: a form field ``payload``),
``bitbucketcloud`` and ``bitbucketserver`` (webhooks named by the ``X-Event-Key`` header:
pushes, tag and branch deletions, pull requests created, updated, fulfilled and rejected).
"""

from __future__ import annotations

from typing import Any

import structlog

from buildyard.common.awaitables import resolve
from buildyard.master.changes.hooks.base import (
    BaseHookHandler,
    Changes,
    PullRequestProperties,
    codebase_of,
    field,
    media_type,
    parse_json,
    timestamp,
)
from buildyard.master.changes.hooks.request import HookError, HookRequest

log = structlog.get_logger(__name__)

OPTIONS: frozenset[str] = frozenset()
CLOUD_OPTIONS = frozenset({"codebase", "bitbucket_property_whitelist"})


class BitBucketHandler(BaseHookHandler):
    """``bitbucket``: one change per commit of the POST service's payload; ``?project=`` sets
    the project."""

    async def getChanges(self, request: HookRequest) -> Changes:
        form = request.args.get(b"payload")
        if not form:
            raise HookError("the request has no 'payload' form field")
        payload = parse_json(form[0], "bitbucket")
        event = request.header("X-Event-Key")
        repo_url = f"{field(payload, 'canon_url')}{field(payload, 'repository', 'absolute_url')}"
        project = request.arg("project") or ""
        changes = [
            {
                "author": field(commit, "raw_author"),
                "files": [field(f, "file") for f in field(commit, "files")],
                "comments": field(commit, "message"),
                "revision": field(commit, "raw_node"),
                "when_timestamp": timestamp(field(commit, "utctimestamp"), "bitbucket"),
                "branch": field(commit, "branch"),
                "revlink": f"{repo_url}commits/{field(commit, 'raw_node')}",
                "repository": repo_url,
                "project": project,
                "properties": {"event": event},
            }
            for commit in field(payload, "commits")
        ]
        return changes, field(payload, "repository", "scm")


class _BitbucketEvents(PullRequestProperties):
    """What Bitbucket Cloud and Server share: events by ``X-Event-Key`` (``repo:push`` is
    ``handle_repo_push``), and the same changes from differently named fields."""

    property_basename = "bitbucket"
    product = "Bitbucket"

    def __init__(self, master: Any, options: Any = None) -> None:
        self.master = master
        self.options = options if isinstance(options, dict) else {}
        self._codebase = self.options.get("codebase")
        self.external_property_whitelist = list(
            self.options.get("bitbucket_property_whitelist") or []
        )

    def bind(self, context: Any) -> None:
        """Nothing of the context is needed."""

    async def getChanges(self, request: HookRequest) -> Changes:
        kind = media_type(request)
        if not kind.startswith("application/json"):
            raise HookError(f"Unknown content type: {request.header('Content-Type')!r}")
        payload = parse_json(request.body(), "bitbucket")
        event = request.header("X-Event-Key")
        if event is None:
            raise HookError("Header X-Event-Key is not present")
        handler = getattr(self, f"handle_{event.replace(':', '_')}", None)
        if handler is None:
            raise HookError(f"Unknown event: {event.replace(':', '_')}")
        result = handler(payload)
        result = await resolve(result)
        changes, src = result
        return changes, src

    # the fields that differ between the products
    def _repo_url(self, payload: Any) -> str:
        raise NotImplementedError

    def _web_url(self, payload: Any) -> str:
        raise NotImplementedError

    def _project(self, payload: Any) -> str:
        raise NotImplementedError

    def _actor(self, payload: Any) -> str:
        raise NotImplementedError

    def _scm(self, payload: Any) -> str:
        raise NotImplementedError

    def handle_repo_push(self, payload: Any) -> Changes:
        changes = []
        repo_url, web_url = self._repo_url(payload), self._web_url(payload)
        for ref_change in field(payload, "push", "changes"):
            # a deleted ref has no "new": its change names the old head
            age, category = ("new", "push") if ref_change.get("new") else ("old", "ref-deleted")
            ref = field(ref_change, age)
            revision = field(ref, "target", "hash")
            branch = None
            if ref.get("type") == "branch":
                branch = f"refs/heads/{field(ref, 'name')}"
            elif ref.get("type") == "tag":
                branch = f"refs/tags/{field(ref, 'name')}"
            changes.append(
                {
                    "revision": revision,
                    "revlink": f"{web_url}commits/{revision}",
                    "repository": repo_url,
                    "author": self._actor(payload),
                    "comments": f"{self.product} commit {revision}",
                    "branch": branch,
                    "project": self._project(payload),
                    "category": category,
                    **codebase_of(self._codebase, payload),
                }
            )
        return changes, self._scm(payload)

    def handle_pullrequest_created(self, payload: Any) -> Changes:
        number = int(field(payload, "pullrequest", "id"))
        return self.handle_pullrequest(
            payload, f"refs/pull-requests/{number}/merge", "pull-created"
        )

    def handle_pullrequest_updated(self, payload: Any) -> Changes:
        number = int(field(payload, "pullrequest", "id"))
        return self.handle_pullrequest(
            payload, f"refs/pull-requests/{number}/merge", "pull-updated"
        )

    def handle_pullrequest_fulfilled(self, payload: Any) -> Changes:
        branch = field(self._side(field(payload, "pullrequest"), "to"), "branch", "name")
        return self.handle_pullrequest(payload, f"refs/heads/{branch}", "pull-fulfilled")

    def handle_pullrequest_rejected(self, payload: Any) -> Changes:
        branch = field(self._side(field(payload, "pullrequest"), "from"), "branch", "name")
        return self.handle_pullrequest(payload, f"refs/heads/{branch}", "pull-rejected")

    def _side(self, pr: Any, side: str) -> Any:
        """The pull request's source (``from``) or target (``to``) ref: ``fromRef``/``toRef``
        as the Bitbucket Server plugin sends them."""
        return field(pr, f"{side}Ref")

    def _link(self, pr: Any) -> Any:
        return field(pr, "link")

    def handle_pullrequest(self, payload: Any, refname: str, category: str) -> Changes:
        pr = field(payload, "pullrequest")
        revlink = self._link(pr)
        change = {
            "revision": field(self._side(pr, "from"), "commit", "hash"),
            "revlink": revlink,
            "repository": self._repo_url(payload),
            "author": self._actor(payload),
            "comments": f"{self.product} Pull Request #{int(field(pr, 'id'))}",
            "branch": refname,
            "project": self._project(payload),
            "category": category,
            "properties": {"pullrequesturl": revlink, **self.extractProperties(pr)},
            **codebase_of(self._codebase, payload),
        }
        return [change], self._scm(payload)


class BitbucketCloudEventHandler(_BitbucketEvents):
    """``bitbucketcloud``."""

    product = "Bitbucket Cloud"

    def _side(self, pr: Any, side: str) -> Any:
        # Bitbucket Cloud's pull requests have "source" and "destination" (Buildbot 4.3 reads
        # only the Server plugin's "fromRef"/"toRef", which Cloud does not send)
        if f"{side}Ref" in pr:
            return pr[f"{side}Ref"]
        return field(pr, "source" if side == "from" else "destination")

    def _link(self, pr: Any) -> Any:
        if "link" in pr:
            return pr["link"]
        return field(pr, "links", "html", "href")

    def _repo_url(self, payload: Any) -> str:
        return str(field(payload, "repository", "links", "self", "href"))

    def _web_url(self, payload: Any) -> str:
        return f"{field(payload, 'repository', 'links', 'html', 'href')}/"

    def _project(self, payload: Any) -> str:
        project = field(payload, "repository").get("project", {"name": "none"})
        return str(field(project, "name"))

    def _actor(self, payload: Any) -> str:
        actor = field(payload, "actor")
        return f"{field(actor, 'display_name')} <{field(actor, 'nickname')}>"

    def _scm(self, payload: Any) -> str:
        return str(field(payload, "repository", "scm"))


class BitbucketServerEventHandler(_BitbucketEvents):
    """``bitbucketserver``."""

    product = "Bitbucket Server"

    def handle_repo_refs_changed(self, payload: Any) -> Changes:
        return self.handle_repo_push(payload)

    def _repo_url(self, payload: Any) -> str:
        url = str(field(payload, "repository", "links", "self", 0, "href"))
        return url.removesuffix("browse")

    _web_url = _repo_url

    def _project(self, payload: Any) -> str:
        return str(field(payload, "repository", "project", "name"))

    def _actor(self, payload: Any) -> str:
        actor = field(payload, "actor")
        return f"{field(actor, 'displayName')} <{field(actor, 'username')}>"

    def _scm(self, payload: Any) -> str:
        return str(field(payload, "repository", "scmId"))

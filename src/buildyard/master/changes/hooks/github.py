"""The ``github`` dialect: GitHub's webhook events ``push`` (branches and tags), ``pull_request``,
``ping`` and ``workflow_run`` (the last two record nothing), with Buildbot's options and changes.

Payloads are checked against the ``secret`` with the ``X-Hub-Signature-256`` header (HMAC
SHA-256) when GitHub sends it, else ``X-Hub-Signature`` (SHA-1, or ``sha256=...``). A pull
request's head commit message (for ``skips``) and its files are read from the GitHub API at
``github_api_endpoint``, with ``token`` if given, as Buildbot does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from buildyard.common.awaitables import resolve
from buildyard.master.changes.hooks.base import (
    BaseHookHandler,
    Changes,
    HookContext,
    NoContext,
    PullRequestProperties,
    codebase_of,
    field,
    media_type,
    parse_json,
    timestamp,
)
from buildyard.master.changes.hooks.request import HookError, HookRequest

log = structlog.get_logger(__name__)

DEFAULT_SKIPS_PATTERN = [r"\[ *skip *ci *\]", r"\[ *ci *skip *\]"]
DEFAULT_GITHUB_API_URL = "https://api.github.com"
# how long a call to the GitHub API may take before the hook goes on without its answer
API_TIMEOUT = 30.0
_REF = re.compile(r"^refs/(heads|tags)/(.+)$")

OPTIONS = frozenset(
    {
        "secret",
        "strict",
        "codebase",
        "github_property_whitelist",
        "class",
        "skips",
        "github_api_endpoint",
        "token",
        "pullrequest_ref",
        "debug",
        "verify",
    }
)


class GitHubEventHandler(PullRequestProperties):
    """``buildbot.www.hooks.github.GitHubEventHandler``: one method ``handle_<event>(payload,
    event)`` per GitHub event it records; subclass it (the ``class`` option) for more events.
    A handler method returns ``(changes, src)``, or an awaitable of it."""

    property_basename = "github"

    def __init__(
        self,
        secret: Any,
        strict: bool,
        codebase: str | Callable[[Any], Any] | None = None,
        github_property_whitelist: Sequence[str] | None = None,
        master: Any = None,
        skips: Sequence[str] | None = None,
        github_api_endpoint: str | None = None,
        pullrequest_ref: str | None = None,
        token: Any = None,
        debug: bool = False,
        verify: bool = True,
    ) -> None:
        self._secret = secret
        self._strict = strict
        self._token = token
        self._codebase = codebase
        self.external_property_whitelist = list(github_property_whitelist or [])
        self.pullrequest_ref = pullrequest_ref or "merge"
        self.skips = list(DEFAULT_SKIPS_PATTERN if skips is None else skips)
        self.github_api_endpoint = (github_api_endpoint or DEFAULT_GITHUB_API_URL).rstrip("/")
        self.master = master
        self.debug = debug
        self.verify = verify
        self.context: HookContext = NoContext()
        self._renderer = BaseHookHandler(master, None)
        if self._strict and not self._secret:
            raise ValueError("Strict mode is requested while no secret is provided")

    def bind(self, context: HookContext) -> None:
        self.context = context
        self._renderer.bind(context)

    async def process(self, request: HookRequest) -> Changes:
        payload = await self._get_payload(request)
        event = request.header("X-GitHub-Event")
        handler = getattr(self, f"handle_{event}", None) if event else None
        if handler is None:
            raise HookError(f"Unknown event: {event}")
        result = handler(payload, event)
        result = await resolve(result)
        changes, src = result
        return changes, src

    async def _get_payload(self, request: HookRequest) -> Any:
        body = request.body()
        await self._check_signature(request, body)
        kind = media_type(request)
        if kind == "application/json":
            return parse_json(body, "github")
        if kind == "application/x-www-form-urlencoded":
            form = request.args.get(b"payload")
            if not form:
                raise HookError("the form has no 'payload' field")
            return parse_json(form[0], "github")
        raise HookError(f"Unknown content type: {request.header('Content-Type')}")

    async def _check_signature(self, request: HookRequest, body: bytes) -> None:
        sha256 = request.header("X-Hub-Signature-256")
        signature = sha256 or request.header("X-Hub-Signature")
        if not signature:
            if self._strict:
                raise HookError("Request has no required signature")
            if self._secret:
                log.warning(
                    "change_hook_unsigned_payload",
                    hook="github",
                    reason="a secret is set but 'strict' is not: unsigned payloads pass",
                )
            return
        if not self._secret:
            return
        kind, _, digest = signature.partition("=")
        algorithms = {"sha256": hashlib.sha256} if sha256 else {"sha1": hashlib.sha1}
        algorithms.setdefault("sha256", hashlib.sha256)
        if not digest:
            raise HookError(f"Wrong signature format: {signature}")
        if kind not in algorithms:
            raise HookError(f"Unknown hash type: {kind}")
        secret = await self._renderer.render_option(self._secret)
        expected = hmac.new(str(secret).encode(), body, algorithms[kind]).hexdigest()
        if not hmac.compare_digest(expected, digest):
            raise HookError("Hash mismatch")

    # -- events --------------------------------------------------------------------------------

    def handle_ping(self, _payload: Any, _event: str) -> Changes:
        return [], "git"

    def handle_workflow_run(self, _payload: Any, _event: str) -> Changes:
        return [], "git"

    def handle_push(self, payload: Any, event: str) -> Changes:
        repo_url = field(payload, "repository", "html_url")
        project = field(payload, "repository", "full_name")
        properties = self.extractProperties(payload)
        changes = self._process_change(payload, None, None, repo_url, project, event, properties)
        log.info("change_hook_push", hook="github", changes=len(changes), project=project)
        return changes, "git"

    async def handle_pull_request(self, payload: Any, event: str) -> Changes:
        number = field(payload, "number")
        pr = field(payload, "pull_request")
        action = payload.get("action")
        repo_full_name = field(payload, "repository", "full_name")
        head_sha = field(pr, "head", "sha")
        if action not in ("opened", "reopened", "synchronize"):
            log.info("change_hook_pr_ignored", hook="github", number=number, action=action)
            return [], "git"
        head_msg = await self._get_commit_msg(repo_full_name, head_sha)
        if self._has_skip(head_msg):
            log.info("change_hook_skipped", hook="github", number=number, revision=head_sha)
            return [], "git"
        files = await self._get_pr_files(repo_full_name, number)
        commits = field(pr, "commits")
        revlink = field(pr, "_links", "html", "href")
        change = {
            "revision": head_sha,
            "when_timestamp": timestamp(field(pr, "created_at"), "github"),
            "branch": f"refs/pull/{number}/{self.pullrequest_ref}",
            "files": files,
            "revlink": revlink,
            "repository": field(payload, "repository", "html_url"),
            "project": field(pr, "base", "repo", "full_name"),
            "category": "pull",
            "author": field(payload, "sender", "login"),
            "comments": (
                f"GitHub Pull Request #{number} ({commits} commit{'s' if commits != 1 else ''})\n"
                f"{field(pr, 'title')}\n{pr.get('body')}"
            ),
            "properties": {
                "pullrequesturl": revlink,
                "event": event,
                "basename": field(pr, "base", "ref"),
                **self.extractProperties(pr),
            },
            **codebase_of(self._codebase, payload),
        }
        return [change], "git"

    def _process_change(
        self,
        payload: Any,
        user: str | None,
        repo: str | None,
        repo_url: str,
        project: str,
        event: str,
        properties: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """The changes of a push: one per commit (only the head commit of a new branch or
        tag); none for a deleted ref, a ref outside heads and tags, or a skipped push."""
        ref = field(payload, "ref")
        match = _REF.match(ref) if isinstance(ref, str) else None
        if match is None:
            log.info("change_hook_ref_ignored", hook="github", ref=ref, reason="not a branch")
            return []
        category = "tag" if match.group(1) == "tags" else None
        branch = match.group(2)
        if payload.get("deleted"):
            log.info("change_hook_ref_ignored", hook="github", ref=ref, reason="deleted")
            return []
        head = payload.get("head_commit") or {}
        if not isinstance(head, dict):
            raise HookError("the payload's 'head_commit' is not an object")
        message = head.get("message", "")
        if not isinstance(message, str):
            raise HookError("the payload's 'head_commit.message' is not a string")
        if self._has_skip(message):
            log.info("change_hook_skipped", hook="github", ref=ref)
            return []
        commits = (
            [field(payload, "head_commit")] if payload.get("created") else field(payload, "commits")
        )
        created = bool(payload.get("created"))
        if not isinstance(commits, list) or not all(isinstance(c, dict) for c in commits):
            what = (
                "'head_commit' is not an object"
                if created
                else "'commits' is not a list of objects"
            )
            raise HookError(f"the payload's {what}")
        changes = []
        for i, commit in enumerate(commits):
            files: list[str] = []
            for kind in ("added", "modified", "removed"):
                names = commit.get(kind, [])
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    where = f"head_commit.{kind}" if created else f"commits[{i}].{kind}"
                    raise HookError(f"the payload's {where!r} is not a list of file names")
                files.extend(names)
            author, committer = field(commit, "author"), field(commit, "committer")
            changes.append(
                {
                    "author": f"{field(author, 'name')} <{field(author, 'email')}>",
                    "committer": f"{field(committer, 'name')} <{field(committer, 'email')}>",
                    "files": files,
                    "comments": field(commit, "message"),
                    "revision": field(commit, "id"),
                    "when_timestamp": timestamp(field(commit, "timestamp"), "github"),
                    "branch": branch,
                    "revlink": field(commit, "url"),
                    "repository": repo_url,
                    "project": project,
                    "properties": {
                        "github_distinct": commit.get("distinct", True),
                        "event": event,
                        **properties,
                    },
                    "category": category,
                    **codebase_of(self._codebase, payload),
                }
            )
        return changes

    def _has_skip(self, msg: str) -> bool:
        return any(re.search(skip, msg) for skip in self.skips)

    # -- the GitHub API ------------------------------------------------------------------------

    async def _api_get(self, repo: str, path: str) -> Any:
        """GET ``path`` from the GitHub API, its JSON; None (logged) when it fails."""
        headers = {"User-Agent": "Buildbot"}
        if self._token:
            token = await self._renderer.render_option(self._token, full_name=repo)
            headers["Authorization"] = f"token {token}"
        url = self.github_api_endpoint + path
        import aiohttp  # (on first use: a master that never calls GitHub's API does not load it)

        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=API_TIMEOUT)) as http,
                http.get(url, headers=headers, ssl=bool(self.verify)) as response,
            ):
                if self.debug:
                    log.info("github_api_response", url=url, status=response.status)
                if 200 <= response.status < 300:
                    return await response.json(content_type=None)
                log.warning("github_api_failed", hook="github", url=url, status=response.status)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            log.warning("github_api_failed", hook="github", url=url, error=str(exc))
        return None

    async def _get_commit_msg(self, repo: str, sha: str) -> str:
        data = await self._api_get(repo, f"/repos/{repo}/commits/{sha}")
        try:
            return str(data["commit"]["message"])
        except (KeyError, TypeError):
            return "No message field"

    async def _get_pr_files(self, repo: str, number: int) -> list[str]:
        data = await self._api_get(repo, f"/repos/{repo}/pulls/{number}/files")
        names: list[str] = []
        for item in data if isinstance(data, list) else []:
            if isinstance(item, dict) and "filename" in item:
                names.append(item["filename"])
                # a renamed file: where it came from
                if item.get("previous_filename") is not None:
                    names.append(item["previous_filename"])
        return names


class GitHubHandler(BaseHookHandler):
    """The ``github`` dialect: builds the ``class`` option's handler (by default
    :class:`GitHubEventHandler`) from the other options, as Buildbot does."""

    def __init__(self, master: Any, options: Any) -> None:
        options = options if isinstance(options, dict) else {}
        super().__init__(master, options)
        klass = options.get("class") or GitHubEventHandler
        self.handler = klass(
            options.get("secret"),
            options.get("strict", False),
            master=master,
            codebase=options.get("codebase"),
            github_property_whitelist=options.get("github_property_whitelist"),
            skips=options.get("skips"),
            github_api_endpoint=options.get("github_api_endpoint"),
            pullrequest_ref=options.get("pullrequest_ref"),
            token=options.get("token"),
            debug=bool(options.get("debug", False)),
            verify=options.get("verify", True) is not False,
        )

    def bind(self, context: HookContext) -> None:
        super().bind(context)
        bind = getattr(self.handler, "bind", None)
        if callable(bind):
            bind(context)

    async def getChanges(self, request: HookRequest) -> Changes:
        return await self.handler.process(request)

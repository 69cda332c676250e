"""Fake GitHub and Bitbucket Cloud REST APIs on loopback, for the pull request pollers.

One aiohttp server, in a thread of its own (so both async unit tests and the e2e tests, whose
masters are other processes, can use it), serves the same pull requests in each forge's
documented shapes: GitHub's ``/repos/{owner}/{repo}/pulls`` (paged with ``Link`` headers, page
size ``page_size``), ``/pulls/{n}``, ``/pulls/{n}/commits`` and ``/pulls/{n}/files``; Bitbucket's
``/2.0/repositories/{owner}/{slug}/pullrequests`` (paged with ``next``), the pull request, the
commit, its diff and the repository, each reached through the ``links`` the answers carry. It
records every request (method, path with query, Authorization header) and answers the next
requests from ``queued`` (status, body, headers; status ``DROP``: no answer, the connection
closed) when a test queues trouble.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from buildyard.testing.postgres import free_port

OWNER, REPO = "octo", "lamp"
# a status to queue for "no answer": the server closes the connection
DROP = -1


@dataclasses.dataclass
class FakePull:
    number: int
    title: str
    body: str | None
    head_branch: str
    base_branch: str = "main"
    author: tuple[str, str] = ("Ann Author", "ann@example.org")
    committer: tuple[str, str] = ("Cy Committer", "cy@example.org")
    files: list[str] = dataclasses.field(default_factory=lambda: ["src/lamp.c"])
    deleted: list[str] = dataclasses.field(default_factory=list)
    updated: str = "2026-03-01T10:20:30Z"
    head_sha: str = ""
    commits: int = 1
    fork_owner: str = "fork"

    def push(self, label: str) -> str:
        """A new head commit; its sha."""
        self.head_sha = hashlib.sha1(f"{self.number}-{label}".encode()).hexdigest()
        self.commits += 1
        return self.head_sha


@dataclasses.dataclass
class Request:
    method: str
    path: str
    authorization: str | None


@dataclasses.dataclass
class FakeForges:
    url: str = ""
    pulls: dict[int, FakePull] = dataclasses.field(default_factory=dict)
    requests: list[Request] = dataclasses.field(default_factory=list)
    queued: list[tuple[int, str, dict[str, str]]] = dataclasses.field(default_factory=list)
    page_size: int = 30
    # where the "next page" links point (another server, to test that the pollers do not
    # follow them); this server's own address when empty
    next_base: str = ""
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def add(self, pull: FakePull) -> FakePull:
        if not pull.head_sha:
            _ = pull.push("first")
            pull.commits = 1
        with self.lock:
            self.pulls[pull.number] = pull
        return pull

    def paths(self) -> list[str]:
        with self.lock:
            return [r.path for r in self.requests]

    # -- GitHub shapes ---------------------------------------------------------------------

    def gh_repo(self, owner: str) -> dict[str, Any]:
        full = f"{owner}/{REPO}"
        return {
            "full_name": full,
            "name": REPO,
            "clone_url": f"https://github.com/{full}.git",
            "git_url": f"git://github.com/{full}.git",
            "ssh_url": f"git@github.com:{full}.git",
            "svn_url": f"https://github.com/{full}",
            "owner": {"login": owner},
        }

    def gh_pull(self, pull: FakePull, *, full: bool) -> dict[str, Any]:
        found: dict[str, Any] = {
            "url": f"{self.url}/repos/{OWNER}/{REPO}/pulls/{pull.number}",
            "html_url": f"https://github.com/{OWNER}/{REPO}/pull/{pull.number}",
            "number": pull.number,
            "state": "open",
            "title": pull.title,
            "body": pull.body,
            "updated_at": pull.updated,
            "user": {"login": "ann", "id": 7},
            "head": {
                "ref": pull.head_branch,
                "sha": pull.head_sha,
                "label": f"{pull.fork_owner}:{pull.head_branch}",
                "repo": self.gh_repo(pull.fork_owner),
            },
            "base": {
                "ref": pull.base_branch,
                "sha": "b" * 40,
                "label": f"{OWNER}:{pull.base_branch}",
                "repo": self.gh_repo(OWNER),
            },
        }
        if full:
            found.update(commits=pull.commits, additions=3, deletions=1, mergeable=True)
        return found

    def gh_commits(self, pull: FakePull) -> list[dict[str, Any]]:
        return [
            {
                "sha": pull.head_sha,
                "commit": {
                    "author": {"name": pull.author[0], "email": pull.author[1]},
                    "committer": {"name": pull.committer[0], "email": pull.committer[1]},
                    "message": pull.title,
                },
            }
        ]

    # -- Bitbucket Cloud shapes ------------------------------------------------------------

    def bb_base(self) -> str:
        return f"{self.url}/2.0/repositories/{OWNER}/{REPO}"

    def bb_pull(self, pull: FakePull) -> dict[str, Any]:
        base = self.bb_base()
        return {
            "id": pull.number,
            "title": pull.title,
            "description": pull.body or "",
            "state": "OPEN",
            "author": {"display_name": pull.author[0], "nickname": "ann"},
            "updated_on": pull.updated.replace("Z", ".123456+00:00"),
            "source": {
                "branch": {"name": pull.head_branch},
                "commit": {
                    "hash": pull.head_sha[:12],
                    "links": {"self": {"href": f"{base}/commit/{pull.head_sha[:12]}"}},
                },
                "repository": {
                    "full_name": f"{pull.fork_owner}/{REPO}",
                    "links": {
                        "self": {"href": f"{self.url}/2.0/repositories/{pull.fork_owner}/{REPO}"}
                    },
                },
            },
            "destination": {"branch": {"name": pull.base_branch}},
            "links": {
                "self": {"href": f"{base}/pullrequests/{pull.number}"},
                "html": {
                    "href": f"https://bitbucket.org/{OWNER}/{REPO}/pull-requests/{pull.number}"
                },
            },
        }

    def bb_diff(self, pull: FakePull) -> str:
        parts: list[str] = []
        for name in pull.files:
            parts.append(
                f"diff --git a/{name} b/{name}\nindex 1111111..2222222 100644\n"
                f"--- a/{name}\n+++ b/{name}\n@@ -1,2 +1,2 @@\n line\n-old\n+new\n"
            )
        for name in pull.deleted:
            parts.append(
                f"diff --git a/{name} b/{name}\ndeleted file mode 100644\n"
                f"index 1111111..0000000\n--- a/{name}\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n"
            )
        return "".join(parts)

    # -- routing ---------------------------------------------------------------------------

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            pulls = sorted(self.pulls.values(), key=lambda p: -p.number)
        gh = f"/repos/{OWNER}/{REPO}/pulls"
        if path == gh:
            page = int(query.get("page", "1"))
            chosen = pulls[(page - 1) * self.page_size : page * self.page_size]
            headers = {}
            if page * self.page_size < len(pulls):
                headers["Link"] = f'<{self.next_base or self.url}{gh}?page={page + 1}>; rel="next"'
            return 200, [self.gh_pull(p, full=False) for p in chosen], headers
        if path.startswith(gh + "/"):
            number, _, rest = path.removeprefix(gh + "/").partition("/")
            pull = self.pulls.get(int(number)) if number.isdigit() else None
            if pull is None:
                return 404, {"message": "Not Found"}, {}
            if rest == "":
                return 200, self.gh_pull(pull, full=True), {}
            if rest == "commits":
                return 200, self.gh_commits(pull), {}
            if rest == "files":
                return 200, [{"filename": f, "status": "modified"} for f in pull.files], {}
        bb = f"/2.0/repositories/{OWNER}/{REPO}"
        if path == f"{bb}/pullrequests":
            page = int(query.get("page", "1"))
            chosen = pulls[(page - 1) * self.page_size : page * self.page_size]
            listing: dict[str, Any] = {
                "values": [self.bb_pull(p) for p in chosen],
                "pagelen": self.page_size,
                "size": len(pulls),
                "page": page,
            }
            if page * self.page_size < len(pulls):
                listing["next"] = f"{self.next_base or self.url}{bb}/pullrequests?page={page + 1}"
            return 200, listing, {}
        if path.startswith(f"{bb}/pullrequests/"):
            pull = self.pulls.get(int(path.rsplit("/", 1)[1]))
            if pull is not None:
                return 200, self.bb_pull(pull), {}
        if path.startswith((f"{bb}/commit/", f"{bb}/diff/")):
            sha = path.rsplit("/", 1)[1]
            for pull in pulls:
                if pull.head_sha.startswith(sha):
                    if "/diff/" in path:
                        return 200, self.bb_diff(pull), {"Content-Type": "text/plain"}
                    return 200, self.bb_commit(pull), {}
        if path.startswith("/2.0/repositories/") and path.count("/") == 4:
            full = path.removeprefix("/2.0/repositories/")
            return (
                200,
                {"full_name": full, "links": {"html": {"href": f"https://bitbucket.org/{full}"}}},
                {},
            )
        return 404, {"message": "Not Found"}, {}

    def bb_commit(self, pull: FakePull) -> dict[str, Any]:
        base = self.bb_base()
        return {
            "hash": pull.head_sha,
            "links": {
                "html": {"href": f"https://bitbucket.org/{OWNER}/{REPO}/commits/{pull.head_sha}"},
                "diff": {"href": f"{base}/diff/{pull.head_sha}"},
            },
        }


@contextlib.contextmanager
def fake_forges() -> Iterator[FakeForges]:
    fake = FakeForges()
    port = free_port()
    fake.url = f"http://127.0.0.1:{port}"

    async def handle(request: web.Request) -> web.StreamResponse:
        with fake.lock:
            fake.requests.append(
                Request(request.method, request.path_qs, request.headers.get("Authorization"))
            )
            trouble = fake.queued.pop(0) if fake.queued else None
        if trouble is not None:
            status, text, headers = trouble
            if status == DROP:  # no answer at all: the connection closes
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError("dropped by the fake")
            return web.Response(status=status, text=text, headers=headers)
        status, data, headers = fake.answer(request.path, dict(request.query))
        if isinstance(data, str):
            return web.Response(status=status, text=data, headers=headers)
        return web.Response(
            status=status,
            text=json.dumps(data),
            headers={"Content-Type": "application/json", **headers},
        )

    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner_box: list[web.AppRunner] = []

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runner_box.append(runner)
        started.set()

    thread = threading.Thread(target=loop.run_forever, name="fake-forges", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=30)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner_box[0].cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()

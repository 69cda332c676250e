"""A fake OAuth2 provider on loopback, shaped like the documented APIs of GitHub (Enterprise's
layout: ``/login/oauth/*``, ``/api/v3``, ``/api/graphql``), GitLab (``/oauth/*``,
``/api/v4``), Google (``/o/oauth2/*``, ``/oauth2/v1/userinfo``) and Bitbucket Cloud
(``/site/oauth2/*``, ``/2.0``), all on one server. It records every request.

Its authorize page stands for a user who agrees at once: it answers with a redirect to the
``redirect_uri`` with a fresh ``code`` and the ``state`` given. A code is good once, for the
client and ``redirect_uri`` it was made for; the token endpoint checks the client's id and
secret (in the form, or HTTP Basic), and the APIs the token (an ``Authorization`` header, or
the ``access_token`` query argument these providers also take). Lists are served a few items
per page (``Link: rel="next"`` for GitHub and GitLab, ``next`` for Bitbucket), so that a
client reading only the first page misses some.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import re
import secrets
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CLIENT_ID = "the-client-id"
CLIENT_SECRET = "s3cret-of-the-client-7f3a"
PAGE = 2  # list items per page


@dataclasses.dataclass
class Person:
    login: str
    name: str
    email: str | None  # the public email (GitHub's /user)
    emails: list[dict[str, Any]]  # GitHub's /user/emails
    orgs: list[str]
    teams: dict[str, list[tuple[str, str]]]  # org: [(name, slug)]
    groups: list[str]  # GitLab's group paths
    workspaces: list[str]  # Bitbucket's slugs


PEOPLE = {
    "octocat": Person(
        login="octocat",
        name="Mona Octocat",
        email="public@example.org",
        emails=[
            {"email": "other@example.org", "primary": False, "verified": True},
            {"email": "mona@example.org", "primary": True, "verified": True},
        ],
        orgs=["SFML", "build-team", "third-org"],
        teams={
            "SFML": [("Core Devs", "core-devs")],
            "build-team": [("Admins", "admins"), ("Release", "release")],
        },
        groups=["SFML", "tools", "tools/ci"],
        workspaces=["sfml-ws", "tools-ws", "third-ws"],
    ),
    "sly": Person(
        login="sly",
        name="Sly",
        email="sly@example.org",
        emails=[{"email": "ceo@example.com", "primary": True, "verified": False}],
        orgs=[],
        teams={},
        groups=[],
        workspaces=[],
    ),
    "broken": Person(
        login="broken",
        name="",
        email=None,
        emails=[],
        orgs=[],
        teams={},
        groups=[],
        workspaces=[],
    ),
    "visitor": Person(
        login="visitor",
        name="Vera Visitor",
        email=None,
        emails=[{"email": "vera@example.org", "primary": True, "verified": True}],
        orgs=["elsewhere"],
        teams={},
        groups=["elsewhere"],
        workspaces=["elsewhere-ws"],
    ),
}


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: str


class FakeProvider:
    def __init__(self) -> None:
        self.url = ""
        # where the next pages are said to be (None: here); a test sets another server
        self.next_base: str | None = None
        self.requests: list[Request] = []
        self.user = "octocat"  # who agrees at the authorize page
        self._codes: dict[str, tuple[str, str, str]] = {}  # code: (client, redirect_uri, user)
        self._tokens: dict[str, str] = {}  # token: user
        self._lock = threading.Lock()

    def seen(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    # -- the endpoints ----------------------------------------------------------------------

    def authorize(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
        client = query.get("client_id", [""])[0]
        redirect = query.get("redirect_uri", [""])[0]
        if client != CLIENT_ID or not redirect or query.get("response_type") != ["code"]:
            return 400, {}, {"error": "invalid_request"}
        code = secrets.token_hex(8)
        with self._lock:
            self._codes[code] = (client, redirect, self.user)
        back = {"code": code}
        if "state" in query:
            back["state"] = query["state"][0]
        return 302, {"Location": f"{redirect}?{urllib.parse.urlencode(back)}"}, None

    def token(
        self, kind: str, form: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        client, secret = form.get("client_id"), form.get("client_secret")
        basic = headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            client, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        if client != CLIENT_ID or secret != CLIENT_SECRET:
            return 401, {}, {"error": "invalid_client", "error_description": "bad client"}
        with self._lock:
            found = self._codes.pop(form.get("code", ""), None)
        if (
            found is None
            or found[1] != form.get("redirect_uri")
            or form.get("grant_type") != "authorization_code"
        ):
            error = {
                "error": "bad_verification_code" if kind == "github" else "invalid_grant",
                "error_description": "The code passed is incorrect or expired.",
            }
            # GitHub answers a bad code with a 200, the others with a 400
            return (200 if kind == "github" else 400), {}, error
        token = "tok-" + secrets.token_hex(12)
        with self._lock:
            self._tokens[token] = found[2]
        answer = {"access_token": token, "token_type": "bearer", "scope": "read"}
        if kind == "github" and "json" not in headers.get("accept", ""):
            return 200, {}, urllib.parse.urlencode(answer)  # GitHub's default: a form
        return 200, {}, answer

    def who(self, headers: dict[str, str], query: dict[str, list[str]]) -> Person | None:
        header = headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in {"bearer", "token"}:
            token = query.get("access_token", [""])[0]
        login = self._tokens.get(token)
        return PEOPLE.get(login) if login else None

    def paged(
        self, items: list[Any], query: dict[str, list[str]], path: str
    ) -> tuple[list[Any], dict[str, str]]:
        page = int(query.get("page", ["1"])[0])
        chunk = items[(page - 1) * PAGE : page * PAGE]
        headers = {}
        if page * PAGE < len(items):
            args = {k: v[0] for k, v in query.items()}
            args["page"] = str(page + 1)
            base = self.next_base or self.url
            headers["Link"] = f'<{base}{path}?{urllib.parse.urlencode(args)}>; rel="next"'
        return chunk, headers

    def values(self, items: list[Any], query: dict[str, list[str]], path: str) -> dict[str, Any]:
        chunk, headers = self.paged(items, query, path)
        page: dict[str, Any] = {"values": chunk, "pagelen": PAGE}
        if "Link" in headers:
            page["next"] = headers["Link"][1 : headers["Link"].index(">")]
        return page

    def api(
        self, path: str, query: dict[str, list[str]], person: Person
    ) -> tuple[int, dict[str, str], Any]:
        if path == "/api/v3/user":
            if person.login == "broken":  # a server answering off its documented shape
                return 200, {}, ["not", "an", "object"]
            return 200, {}, {"login": person.login, "name": person.name, "email": person.email}
        if path == "/api/v3/user/emails":
            return 200, {}, person.emails
        if path == "/api/v3/user/orgs":
            chunk, headers = self.paged([{"login": o} for o in person.orgs], query, path)
            return 200, headers, chunk
        if path == "/api/v4/user":
            return (
                200,
                {},
                {
                    "username": person.login,
                    "name": person.name,
                    "email": person.emails[-1]["email"],
                    "avatar_url": f"{self.url}/avatar/{person.login}.png",
                },
            )
        if path == "/api/v4/groups":
            items = [{"path": g, "full_path": g} for g in person.groups]
            chunk, headers = self.paged(items, query, path)
            return 200, headers, chunk
        if path == "/oauth2/v1/userinfo":
            return (
                200,
                {},
                {
                    "email": person.emails[-1]["email"],
                    "name": person.name,
                    "picture": f"{self.url}/avatar/{person.login}.png",
                },
            )
        if path == "/2.0/user":
            return 200, {}, {"username": person.login, "display_name": person.name}
        if path == "/2.0/user/emails":
            items = [{"email": e["email"], "is_primary": e["primary"]} for e in person.emails]
            return 200, {}, self.values(items, query, path)
        if path == "/2.0/workspaces":
            if query.get("role") != ["member"]:
                return 400, {}, {"error": {"message": "role=member expected"}}
            return 200, {}, self.values([{"slug": w} for w in person.workspaces], query, path)
        return 404, {}, {"message": "Not Found"}

    def graphql(self, body: dict[str, Any], person: Person) -> tuple[int, dict[str, str], Any]:
        query, variables = body.get("query", ""), body.get("variables") or {}
        if "viewer" in query:
            edges = [{"node": {"login": o}} for o in person.orgs]
            viewer = {
                "login": person.login,
                "name": person.name,
                "email": person.email or "",
                "organizations": {"edges": edges},
            }
            return 200, {}, {"data": {"viewer": viewer}}
        data: dict[str, Any] = {}
        # an alias per organization: login: $variable or login: "literal"
        user_match = re.search(r'userLogins:\s*\[\s*(?:\$(\w+)|"([^"]+)")\s*\]', query)
        if user_match is None:
            return 200, {}, {"errors": [{"message": "no userLogins"}]}
        user = variables.get(user_match.group(1) or "") or user_match.group(2)
        pattern = r'(\w+)\s*:\s*organization\(\s*login:\s*(?:\$(\w+)|"([^"]+)")\s*\)'
        for alias, var, literal in re.findall(pattern, query):
            org = variables.get(var) or literal
            if org == "third-org":
                data[alias] = None  # restricts OAuth applications: no team data
                continue
            teams = person.teams.get(org, []) if user == person.login else []
            edges = [{"node": {"name": n, "slug": s}} for n, s in teams]
            data[alias] = {"teams": {"edges": edges}}
        return 200, {}, {"data": data}

    # -- dispatch ---------------------------------------------------------------------------

    def handle(self, request: Request) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            self.requests.append(request)
        path, query, headers = request.path, request.query, request.headers
        if path in {
            "/login/oauth/authorize",
            "/oauth/authorize",
            "/o/oauth2/auth",
            "/site/oauth2/authorize",
        }:
            return self.authorize(query)
        tokens = {
            "/login/oauth/access_token": "github",
            "/oauth/token": "gitlab",
            "/o/oauth2/token": "google",
            "/site/oauth2/access_token": "bitbucket",
        }
        if path in tokens and request.method == "POST":
            form = {k: v[0] for k, v in urllib.parse.parse_qs(request.body).items()}
            return self.token(tokens[path], form, headers)
        person = self.who(headers, query)
        if person is None:
            return 401, {}, {"message": "Bad credentials"}
        if path == "/api/graphql" and request.method == "POST":
            return self.graphql(json.loads(request.body or "{}"), person)
        return self.api(path, query, person)


@contextlib.contextmanager
def fake_provider(tls: ssl.SSLContext | None = None) -> Iterator[FakeProvider]:
    """The fake on a free loopback port (https with ``tls``), for the ``with`` block."""
    fake = FakeProvider()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            request = Request(
                method=self.command,
                path=parts.path,
                query=urllib.parse.parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            status, headers, data = fake.handle(request)
            if isinstance(data, str):
                payload, kind = data.encode(), "application/x-www-form-urlencoded"
            elif data is None:
                payload, kind = b"", "text/plain"
            else:
                payload, kind = json.dumps(data).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve  # noqa: N815 - http.server's names

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    fake.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-oauth", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)

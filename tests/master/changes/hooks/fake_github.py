"""A fake GitHub API on loopback, for the pull request hook's two calls (a commit, and a pull
request's files); it remembers each request's path and Authorization header."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.master.changes.hooks.payloads import GH_PR_FILES, GH_PR_HEAD_MESSAGE


class FakeGitHub:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.head_message = GH_PR_HEAD_MESSAGE
        self.url = ""

    def answer(self, path: str) -> tuple[int, Any]:
        if "/pulls/" in path and path.endswith("/files"):
            return 200, GH_PR_FILES
        if "/commits/" in path:
            return 200, {"sha": path.rsplit("/", 1)[1], "commit": {"message": self.head_message}}
        return 404, {"message": "Not Found"}


@contextlib.contextmanager
def fake_github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.requests.append((self.path, self.headers.get("Authorization")))
            status, data = fake.answer(self.path)
            payload = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-github", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)

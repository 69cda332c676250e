"""The HTTP client the push reporters and the pull request pollers share: aiohttp, JSON
bodies, retries with backoff.

A request that fails to connect, times out, or gets a 5xx or 429 answer is tried again after
each delay of ``retry_delays`` (doubling: 1 s, 2 s, 4 s by default), then given up; the caller
gets the last answer (or the exception). Each request runs in the reporter's task for that one
event, so a slow or dead server only delays that reporter's reports for that build.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import json
import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import structlog

log = structlog.get_logger(__name__)

RETRY_DELAYS = (1.0, 2.0, 4.0)
TIMEOUT = 30.0


class HttpError(Exception):
    """No usable answer after every try."""


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    status: int
    text: str
    # the answer's headers, names in lower case (GitHub's Link and X-RateLimit-*...)
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def code(self) -> int:  # Buildbot's name
        return self.status

    def json(self) -> Any:
        """The answer as JSON; ``HttpError`` naming what came if it is not JSON."""
        try:
            return json.loads(self.text)
        except ValueError as exc:
            raise HttpError(f"expected JSON, got {self.text[:200]!r}") from exc


def _to_json(value: object) -> object:
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: object) -> str:
    return json.dumps(value, default=_to_json)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int | None]:
    """``url``'s scheme, host (lower case) and port (the scheme's default when not given);
    ``ValueError`` for an unreadable port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def host_of(url: str) -> str:
    """``url``'s scheme, host and port only, for a log line (never its user, path or query)."""
    try:
        scheme, host, port = origin(url)
    except ValueError:
        return "(unreadable address)"
    return f"{scheme}://{host}:{port}" if port is not None else f"{scheme}://{host}"


class HttpClient:
    """Requests to one server (``base_url``); closed by :meth:`close`, opened on first use."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: Sequence[str] | None = None,
        verify: bool | None = None,
        cert: str | None = None,
        debug: bool = False,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        timeout: float = TIMEOUT,
        who: str = "reporter",
        raise_when_exhausted: bool = False,
    ) -> None:
        """``raise_when_exhausted``: a 5xx or 429 answer to the last try raises HttpError (the
        reporters keep such a report), instead of being returned."""
        self.base_url = base_url
        self.raise_when_exhausted = raise_when_exhausted
        self.headers = dict(headers or {})
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            self.headers["Authorization"] = f"Basic {token}"
        self.verify = verify
        self.cert = cert
        self.debug = debug
        self.retry_delays = tuple(retry_delays)
        self.timeout = timeout
        self.who = who
        self._session: aiohttp.ClientSession | None = None

    def same_origin(self, url: str) -> bool:
        """Whether the whole address ``url`` has the scheme, host and port of ``base_url``:
        only there do the client's headers (its token) go."""
        try:
            return origin(url) == origin(self.base_url)
        except ValueError:
            return False

    def _ssl(self) -> ssl.SSLContext | bool:
        if self.verify is False:
            return False
        if self.cert:
            context = ssl.create_default_context()
            context.load_cert_chain(self.cert)
            return context
        return True

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self,
        path: str,
        *,
        json: object = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """POST ``json`` (or the ``form`` fields) to ``base_url + path``, retrying as the
        module says."""
        if form is not None:
            data = urlencode(dict(form)).encode()
            content_type = "application/x-www-form-urlencoded"
        else:
            data, content_type = dumps(json).encode(), "application/json"
        return await self.request(
            "POST", path, data=data, headers={**(headers or {}), "Content-Type": content_type}
        )

    async def get(self, path: str, *, headers: Mapping[str, str] | None = None) -> Response:
        return await self.request("GET", path, headers=headers)

    async def request(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(ssl=self._ssl()),
            )
        # a whole address (the links a REST API hands out) is taken as it is, but only on
        # the server of base_url: elsewhere (another host or port, or http for https) the
        # client's Authorization header would go to whoever the answer named
        absolute = path.startswith(("http://", "https://"))
        if absolute and not self.same_origin(path):
            raise HttpError(
                f"{method} refused: {host_of(path)} is not the server of this client "
                f"({host_of(self.base_url)}); its credentials go there only"
            )
        url = path if absolute else self.base_url + path
        # what is logged: the address without its query string, which may hold a key
        # (Zulip's api_key)
        shown = url.partition("?")[0]
        all_headers = {**self.headers, **(headers or {})}
        delays: list[float | None] = [*self.retry_delays, None]
        answer: Response | None
        for attempt, delay in enumerate(delays, start=1):
            try:
                async with self._session.request(
                    method, url, data=data, headers=all_headers
                ) as resp:
                    answer = Response(
                        resp.status,
                        await resp.text(errors="replace"),
                        {k.lower(): v for k, v in resp.headers.items()},
                    )
                if self.debug:
                    log.info(
                        "http_request",
                        reporter=self.who,
                        method=method,
                        url=shown,
                        status=answer.status,
                    )
                if answer.status < 500 and answer.status != 429:
                    return answer
                problem: str = f"http {answer.status}: {answer.text[:200]}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                answer = None
                problem = f"{type(exc).__name__}: {exc}"
            if delay is None:
                if answer is not None and not self.raise_when_exhausted:
                    return answer
                raise HttpError(f"{method} {shown} failed after {attempt} tries: {problem}")
            log.info(
                "reporter_http_retry",
                reporter=self.who,
                url=shown,
                attempt=attempt,
                problem=problem,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

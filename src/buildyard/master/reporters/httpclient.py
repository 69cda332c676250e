"""The push reporters' HTTP client, :mod:`buildyard.common.httpclient`'s (the pull request
pollers use it too), except that a 5xx or 429 answer to the last retry raises ``HttpError``:
the report is then given up and kept (:mod:`buildyard.master.reporters.base`)."""

from __future__ import annotations

from typing import Any

from buildyard.common import httpclient as _common
from buildyard.common.httpclient import RETRY_DELAYS, TIMEOUT, HttpError, Response, dumps

__all__ = ["RETRY_DELAYS", "TIMEOUT", "HttpClient", "HttpError", "Response", "dumps"]


class HttpClient(_common.HttpClient):
    def __init__(self, base_url: str, **kwargs: Any) -> None:
        kwargs.setdefault("raise_when_exhausted", True)
        super().__init__(base_url, **kwargs)

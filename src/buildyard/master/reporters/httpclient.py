"""The push reporters' HTTP client; it lives in :mod:`buildyard.common.httpclient` now, as the
pull request pollers (``buildyard.master.changes``) use it too."""

from __future__ import annotations

from buildyard.common.httpclient import (
    RETRY_DELAYS,
    TIMEOUT,
    HttpClient,
    HttpError,
    Response,
    dumps,
)

__all__ = ["RETRY_DELAYS", "TIMEOUT", "HttpClient", "HttpError", "Response", "dumps"]

"""What a change hook handler is given: the parts of a web request that hook code reads.

Buildbot hands its handlers a Twisted ``Request``; handlers use ``args``, ``content``,
``getHeader``, ``uri`` and ``method``. :class:`HookRequest` has those with the same types
(bytes, as Twisted gives them), built from a request already read in full, and nothing else:
a handler cannot write the response (the web server answers from what ``getChanges`` returns
or raises).
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import urllib.parse
from collections.abc import Mapping

from buildyard.common.errors import BuildyardError


class HookError(BuildyardError, ValueError):
    """The request is wrong (bad signature, unknown event, a payload without a field the
    dialect needs...): the hook answers 400 with this message. A ``ValueError`` because
    Buildbot's handlers signal a bad request that way, and users' handlers still do."""


def parse_form(data: bytes) -> dict[bytes, list[bytes]]:
    """A query or urlencoded form's fields as the bytes sent, as Twisted's ``args`` hold them.

    The data is cut into items at each ``&`` and ``;``; an item without ``=`` is dropped, the
    rest split at the first ``=``; in name and value ``+`` is a space and each ``%XX`` the
    byte it names. Nothing is decoded as text, so raw bytes over 0x7f (``curl -d author=José``),
    ``%FF`` and ``%C3%A9`` all come through as the bytes sent, and ``%2541`` is ``b"%41"``.
    """
    fields: dict[bytes, list[bytes]] = {}
    for part in data.split(b"&"):
        for item in part.split(b";"):
            name, equals, value = item.partition(b"=")
            if not equals:
                continue
            key = urllib.parse.unquote_to_bytes(name.replace(b"+", b" "))
            fields.setdefault(key, []).append(
                urllib.parse.unquote_to_bytes(value.replace(b"+", b" "))
            )
    return fields


def _form_fields(content_type: str, body: bytes) -> dict[bytes, list[bytes]]:
    """The fields of a form body (urlencoded or multipart), as Twisted's ``args``."""
    media = content_type.split(";", 1)[0].strip().lower()
    fields: dict[bytes, list[bytes]] = {}
    if media == "application/x-www-form-urlencoded":
        for key, values in parse_form(body).items():
            fields.setdefault(key, []).extend(values)
    elif media == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        if not message.is_multipart():
            raise HookError("the multipart/form-data body cannot be read")
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            value = part.get_payload(decode=True)
            fields.setdefault(name.encode(), []).append(value if isinstance(value, bytes) else b"")
    return fields


class HookRequest:
    """One webhook request, read in full: Twisted's names and types for what hooks use.

    ``args`` holds the query's arguments followed by a form body's fields (urlencoded or
    multipart), each name to its list of values, as bytes; ``content`` is the raw body, at its
    start; ``query_string`` is the query as sent, its escapes not undone (aiohttp's
    ``rel_url.raw_query_string``); ``getHeader`` is case-insensitive and gives bytes or None;
    ``uri`` is the path with the query, ``path`` without; ``method`` is e.g. ``b"POST"``.
    """

    def __init__(
        self,
        *,
        method: str,
        path: str,
        query_string: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        self.method = method.encode()
        self.path = path.encode()
        query = query_string.encode("utf-8", "surrogateescape")
        self.uri = self.path + (b"?" + query if query else b"")
        self._headers = {k.lower(): v for k, v in headers.items()}
        self.content = io.BytesIO(body)
        self.args: dict[bytes, list[bytes]] = {}
        for key, values in parse_form(query).items():
            self.args[key] = values
        for key, values in _form_fields(self._headers.get("content-type", ""), body).items():
            self.args.setdefault(key, []).extend(values)

    def getHeader(self, name: str | bytes) -> bytes | None:
        key = name.decode() if isinstance(name, bytes) else name
        value = self._headers.get(key.lower())
        return None if value is None else value.encode("latin-1", "replace")

    def header(self, name: str) -> str | None:
        """The header as text (buildyard's own handlers use this)."""
        return self._headers.get(name.lower())

    def arg(self, name: str) -> str | None:
        """The first value of argument ``name`` as text, or None."""
        values = self.args.get(name.encode())
        return values[0].decode("utf-8", "replace") if values else None

    def body(self) -> bytes:
        return self.content.getvalue()

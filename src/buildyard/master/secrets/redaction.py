"""Hiding secret values wherever a rendered value is stored or shown.

One :class:`Redactor` per master knows the value of every secret its builds looked up (a build
registers a value when it renders ``util.Secret`` or ``%(secret:...)s``) and replaces each
occurrence with ``<name>``, as Buildbot's ``cleanupTextFromSecrets`` does. It is applied at the
boundaries: the data writer (state strings, properties, URLs, log names, test results, ...),
the log writer (:meth:`Redactor.stream`), the UI's ``/config`` and the master's own log.

Log output comes in pieces, and a secret can straddle them. :class:`StreamRedactor` keeps back
the end of what it was given while that end could be the start of a secret, and matches a
secret across the newlines a worker inserts when it cuts a long line (after ``cut_length``
characters; buildbot-worker 4.3.0 cuts one character earlier and drops the character at the
cut, which is matched too; where it loses more, see :data:`TORN_MIN`). With no secret
registered a stream passes text through untouched; otherwise the work is a few ``str.find``
passes over the text per secret (C loops), plus a look at each line long enough to have been
cut and at the last few characters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

__all__ = ["Redactor", "StreamRedactor"]

# what _match returns when the text does not hold the secret there, or ends inside it
_NO = -2
_PARTIAL = -1

# A torn secret: a line that ends with the first characters of a secret, or starts with its last
# ones, shows at least this many of them (and a third of the secret) only by a worker's cut that
# lost the rest (buildbot-worker 4.3.0 loses up to 4095 characters at a cut when a pipe read
# holds more than one line): those characters are hidden too.
TORN_MIN = 7


@dataclasses.dataclass(frozen=True, slots=True)
class _Secret:
    value: str
    marker: str


Span = tuple[int, int, str]  # [start, end) of text to replace, and its replacement


class Redactor:
    """The secret values a master's builds used, and their redaction.

    Values are only added (a value once used stays hidden for the master's life, even when a
    reconfig changes the secret). Readers see an immutable snapshot, so redaction is safe from
    any thread. ``cut_length`` is the ``max_line_length`` workers are given.
    """

    def __init__(self, *, cut_length: int = 4096) -> None:
        self.cut_length = cut_length
        self._secrets: tuple[_Secret, ...] = ()

    def add(self, value: str, name: str) -> None:
        """Hide ``value`` as ``<name>`` from now on. Blank values are not secrets (Buildbot
        ignores them too: hiding every space would make logs unreadable)."""
        if not value.strip() or any(s.value == value for s in self._secrets):
            return
        secrets = [*self._secrets, _Secret(value, f"<{name}>")]
        secrets.sort(key=lambda s: len(s.value), reverse=True)
        self._secrets = tuple(secrets)

    @property
    def active(self) -> bool:
        return bool(self._secrets)

    def names(self) -> list[str]:
        return sorted({s.marker[1:-1] for s in self._secrets})

    def redact(self, text: str) -> str:
        """``text`` with every secret value in it replaced by ``<name>``."""
        secrets = self._secrets
        if not secrets or not any(s.value in text for s in secrets):
            return text
        return _apply(text, _exact_spans(text, secrets, 0, len(text)))

    def redact_value(self, value: Any) -> Any:
        """A JSON-like value with every string in it (dict keys too) redacted; lists and
        tuples come back as lists, dicts as dicts, anything else as it is."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact_value(k): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(v) for v in value]
        return value

    def stream(self) -> StreamRedactor:
        """A redactor for one stream of text given in pieces (one log stream)."""
        return StreamRedactor(self)

    def statistics(self) -> dict[str, int]:
        return {"secrets": len(self._secrets)}


class StreamRedactor:
    """Redacts one stream of text given in pieces, as :meth:`feed` receives them.

    What :meth:`feed` returns is final: it never holds a secret nor the start of one. The end
    of the text is kept back while it could begin a secret (and given with the next piece),
    so the output lags the input only then; :meth:`flush` gives what is kept back, at the end.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held = ""
        # characters of the current line before _held (raw), to tell a worker's cut lines
        self._col = 0
        self._cut_min = max(1, redactor.cut_length - 1)

    @property
    def held(self) -> int:
        """How many characters are kept back."""
        return len(self._held)

    def feed(self, text: str) -> str:
        if not text:
            return ""
        secrets = self._redactor._secrets
        if not secrets and not self._held:
            self._advance(text)
            return text
        return self._process(self._held + text, secrets, final=False)

    def flush(self) -> str:
        """Everything kept back, redacted: the stream ended."""
        if not self._held:
            return ""
        return self._process(self._held, self._redactor._secrets, final=True)

    def _advance(self, emitted: str) -> None:
        nl = emitted.rfind("\n")
        self._col = self._col + len(emitted) if nl < 0 else len(emitted) - nl - 1

    def _process(self, buf: str, secrets: tuple[_Secret, ...], *, final: bool) -> str:
        n = len(buf)
        # whole occurrences of the longer secrets are found with their torn starts (below)
        spans = _exact_spans(buf, [s for s in secrets if len(s.value) <= _least(s)], 0, n)
        cuts = self._cuts(buf) if self._col + n >= self._cut_min else []
        for cut in cuts:
            for secret in secrets:
                spans.extend(self._across(buf, cut, secret))
        for secret in secrets:
            spans.extend(self._torn(buf, secret, final=final))
        hold = n
        if not final:
            for secret in secrets:
                start = self._partial_start(buf, secret)
                if start is not None and start < hold:
                    hold = start
            # a match reaching into what is kept back is found again with the next piece
            while any(end > hold for _start, end, _m in spans):
                hold = min([hold, *(start for start, end, _m in spans if end > hold)])
                spans = [span for span in spans if span[1] <= hold]
        emitted = buf[:hold]
        self._held = buf[hold:]
        self._advance(emitted)
        return _apply(emitted, spans) if spans else emitted

    # -- the worker's cuts -----------------------------------------------------------------------

    def _line_length(self, buf: str, nl: int) -> int:
        """The raw length of the line that the newline at ``nl`` ends."""
        start = buf.rfind("\n", 0, nl)
        return nl - start - 1 if start >= 0 else self._col + nl

    def _is_cut(self, buf: str, nl: int) -> bool:
        return self._line_length(buf, nl) >= self._cut_min

    def _cuts(self, buf: str) -> list[int]:
        """Where in ``buf`` a line long enough to be a worker's cut ends.

        Such a line holds a whole block of ``cut_min // 2`` characters from any start, so only
        blocks without a newline (one ``find`` each) lead to a closer look.
        """
        n, need = len(buf), self._cut_min
        found: list[int] = []
        first = buf.find("\n")
        if first < 0:
            return found
        if self._col + first >= need:
            found.append(first)
        block = max(1, need // 2)
        pos = first + 1
        while pos < n:
            if buf.find("\n", pos, pos + block) >= 0:
                pos += block
                continue
            end = buf.find("\n", pos)
            if end < 0:
                break
            if self._line_length(buf, end) >= need:
                found.append(end)
            pos = end + 1
        return found

    def _limit(self, secret: _Secret) -> int:
        """How many cuts one occurrence of ``secret`` can straddle."""
        return 1 + len(secret.value) // self._cut_min

    def _across(self, buf: str, cut: int, secret: _Secret) -> Iterable[Span]:
        """Occurrences of ``secret`` that straddle the cut at ``cut``."""
        value = secret.value
        first = max(0, cut - len(value) - self._limit(secret))
        limit = self._limit(secret)
        end = self._match(buf, cut, value, 0, limit)  # its first character dropped at the cut
        if end >= 0:
            yield (cut, end, secret.marker)
        q = buf.find(value[0], first, cut)
        while q >= 0:
            end = self._match(buf, q, value, 0, limit)
            if end > cut:
                yield (q, end, secret.marker)
            q = buf.find(value[0], q + 1, cut)

    def _torn(self, buf: str, secret: _Secret, *, final: bool) -> Iterable[Span]:
        """What is left of ``secret`` where a cut lost its other part (see TORN_MIN): a start
        of it that ends a line holds its first ``least`` characters, an end of it that
        begins a line its last ``least``, so those two are searched for (``str.find``)."""
        value, n = secret.value, len(buf)
        size, least = len(value), _least(secret)
        if size <= least:
            return
        head, tail = value[:least], value[size - least :]
        p = buf.find(head)
        while p >= 0:
            end, last = p + least, least
            while end < n and last < size and buf[end] == value[last]:
                end, last = end + 1, last + 1
            if last == size or (buf[end] == "\n" if end < n else final):
                yield (p, end, secret.marker)  # the whole secret, or its torn start
            p = buf.find(head, p + 1)
        p = buf.find(tail)
        while p >= 0:
            start, first = p, size - least
            while start > 0 and first > 0 and buf[start - 1] == value[first - 1]:
                start, first = start - 1, first - 1
            if first > 0 and (buf[start - 1] == "\n" if start else self._col == 0):
                yield (start, p + least, secret.marker)
            p = buf.find(tail, p + 1)

    def _partial_start(self, buf: str, secret: _Secret) -> int | None:
        """The first position from which the rest of ``buf`` could begin ``secret``."""
        n, value = len(buf), secret.value
        if buf.endswith("\n") and "\n" not in value and not self._is_cut(buf, n - 1):
            return None  # a whole line ends the text: nothing can continue across it
        # (a cut that drops a character comes with the rest of its line, in the same piece:
        # only a cut that keeps every character can end a piece)
        limit = self._limit(secret)
        q = buf.find(value[0], max(0, n - len(value) - limit))
        while q >= 0:
            if self._match(buf, q, value, 0, limit) == _PARTIAL:
                return q
            q = buf.find(value[0], q + 1)
        return None

    def _match(self, buf: str, j: int, value: str, i: int, cuts: int) -> int:
        """Match ``value[i:]`` at ``buf[j:]``, across at most ``cuts`` worker cuts: the end of
        the match, :data:`_PARTIAL` when ``buf`` ends first, or :data:`_NO`."""
        n, size = len(buf), len(value)
        while i < size:
            if j >= n:
                return _PARTIAL
            c = buf[j]
            if c == value[i]:
                if c == "\n" and cuts and self._is_cut(buf, j):
                    found = self._match(buf, j + 1, value, i + 1, cuts)
                    if found != _NO:
                        return found
                    return self._after_cut(buf, j + 1, value, i, cuts - 1)
                i += 1
                j += 1
                continue
            if c == "\n" and cuts and self._is_cut(buf, j):
                return self._after_cut(buf, j + 1, value, i, cuts - 1)
            return _NO
        return j

    def _after_cut(self, buf: str, j: int, value: str, i: int, cuts: int) -> int:
        # the worker ended the line before value[i]; buildbot-worker 4.3.0 drops value[i] there
        if i > 0:
            found = self._match(buf, j, value, i, cuts)
            if found != _NO:
                return found
        return self._match(buf, j, value, i + 1, cuts)


def _least(secret: _Secret) -> int:
    """The fewest characters of ``secret`` a torn piece of it shows to be hidden."""
    return max(TORN_MIN, len(secret.value) // 3)


def _exact_spans(text: str, secrets: Iterable[_Secret], start: int, end: int) -> list[Span]:
    spans: list[Span] = []
    for secret in secrets:
        value = secret.value
        at = text.find(value, start, end)
        while at >= 0:
            spans.append((at, at + len(value), secret.marker))
            at = text.find(value, at + len(value), end)
    return spans


def _apply(text: str, spans: list[Span]) -> str:
    """``text`` with each span replaced; overlapping spans become one, shown as the marker of
    the one that starts first (the longest of those)."""
    if not spans:
        return text
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    parts: list[str] = []
    pos = 0
    cur_start, cur_end, cur_marker = spans[0]
    for start, end, marker in spans[1:]:
        if start < cur_end:
            cur_end = max(cur_end, end)
            continue
        parts += [text[pos:cur_start], cur_marker]
        pos = cur_end
        cur_start, cur_end, cur_marker = start, end, marker
    parts += [text[pos:cur_start], cur_marker, text[cur_end:]]
    return "".join(parts)

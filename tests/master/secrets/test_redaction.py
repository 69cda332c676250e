"""The master's secret redaction: whole values, and streams given in pieces that a secret
straddles (separate writes, worker line cuts, multi-line secrets)."""

from __future__ import annotations

import itertools

import pytest

from buildyard.master.secrets.redaction import Redactor

TOKEN = "ghp_T0KEN/abc+123=="  # none of its characters is in the filler below
KEY = "-----BEGIN KEY-----\nMIIB0123\n-----END KEY-----"


def _redactor(cut_length: int = 4096) -> Redactor:
    redactor = Redactor(cut_length=cut_length)
    redactor.add(TOKEN, "token")
    redactor.add(KEY, "key")
    return redactor


def _fragments(text: str, secret: str, size: int = 3) -> list[str]:
    """Pieces of ``secret`` (``size`` characters or more) that ``text`` shows."""
    return [
        secret[i : i + size]
        for i in range(len(secret) - size + 1)
        if secret[i : i + size] in text and "\n" not in secret[i : i + size]
    ]


def test_whole_values_and_json_are_redacted_as_buildbot_names_them() -> None:
    redactor = _redactor()
    assert redactor.redact(f"done {TOKEN}") == "done <token>"
    assert redactor.redact(f"key: {KEY}!") == "key: <key>!"
    assert redactor.redact("nothing here") == "nothing here"
    assert redactor.redact_value({"url": [f"https://x:{TOKEN}@h", 3, None]}) == {
        "url": ["https://x:<token>@h", 3, None]
    }
    assert redactor.names() == ["key", "token"]


def test_blank_values_are_not_secrets_and_nothing_is_done_without_secrets() -> None:
    redactor = Redactor()
    redactor.add("  \n", "blank")
    assert not redactor.active
    stream = redactor.stream()
    assert stream.feed("a b\n") == "a b\n"
    assert stream.flush() == ""


def test_a_secret_inside_another_is_hidden_by_the_longer() -> None:
    redactor = Redactor()
    redactor.add("abc", "short")
    redactor.add("xxabcxx", "long")
    assert redactor.redact("1 xxabcxx 2 abc") == "1 <long> 2 <short>"
    # overlapping values: nothing of either shows
    redactor.add("cxxQQ", "other")
    assert "Q" not in redactor.redact("xxabcxxQQ")


@pytest.mark.parametrize("text", [f"a {TOKEN} b\nc\n", f"x\n{KEY}\ny {TOKEN}{TOKEN}\n"])
def test_a_stream_split_anywhere_gives_what_the_whole_gives(text: str) -> None:
    redactor = _redactor()
    whole = redactor.redact(text)
    assert TOKEN not in whole and "MIIB" not in whole
    for i, j in itertools.combinations(range(len(text) + 1), 2):
        stream = redactor.stream()
        out = [stream.feed(text[:i]), stream.feed(text[i:j]), stream.feed(text[j:])]
        assert "".join(out) + stream.flush() == whole, (i, j)


def test_only_what_could_begin_a_secret_is_held_back() -> None:
    stream = _redactor().stream()
    assert stream.feed("a line\n") == "a line\n"
    assert stream.feed("more ghp_T") == "more "
    assert stream.held == len("ghp_T")
    assert stream.feed("0KEN/abc+123== end\n") == "<token> end\n"
    # a multi-line secret's first line waits for the next ones
    assert stream.feed("-----BEGIN KEY-----\n") == ""
    assert stream.feed("unrelated\n") == "-----BEGIN KEY-----\nunrelated\n"
    assert stream.feed("not ghp_ after all\n") == "not ghp_ after all\n"
    assert stream.feed("the end: ghp_T0") == "the end: "
    assert stream.flush() == "ghp_T0"  # the stream ended: it was not the secret


def _cut_by_buildyard_worker(line: str, limit: int) -> str:
    """What buildyard-worker sends for one long line: pieces of ``limit`` characters."""
    return "".join(line[i : i + limit] + "\n" for i in range(0, len(line), limit))


def _cut_by_stock_worker(line: str, limit: int) -> str:
    """What buildbot-worker 4.3.0 sends for a line of ``limit`` to ``2 * limit - 1``
    characters read in one piece: the first ``limit - 1`` characters, and the rest after the
    character at the cut, which it drops."""
    assert limit <= len(line) < 2 * limit
    return line[: limit - 1] + "\n" + line[limit:] + "\n"


def _cut_by_stock_worker_while_unfinished(line: str, limit: int) -> str:
    """What buildbot-worker 4.3.0 sends when a line of ``limit`` to ``2 * limit - 2``
    characters has no newline yet: its first ``limit - 1`` characters, the rest later."""
    assert limit <= len(line) < 2 * limit - 1
    return line[: limit - 1] + "\n" + line[limit - 1 :] + "\n"


@pytest.mark.parametrize(
    ("cut", "pieces"),
    [
        (_cut_by_buildyard_worker, "one"),
        (_cut_by_buildyard_worker, "line by line"),
        # the stock worker sends the two sides of a cut that drops a character together
        (_cut_by_stock_worker, "one"),
        (_cut_by_stock_worker_while_unfinished, "line by line"),
    ],
)
def test_a_secret_straddling_a_worker_cut_shows_no_part(cut: object, pieces: str) -> None:
    limit = 64
    redactor = _redactor(cut_length=limit)
    for offset in range(-len(TOKEN) - 1, 2):
        line = "x" * (limit + offset) + TOKEN + "y" * (limit - len(TOKEN) - 3)
        sent = cut(line, limit)  # type: ignore[operator]
        stream = redactor.stream()
        if pieces == "one":
            out = stream.feed(sent)
        else:  # each cut line in an update of its own
            out = "".join(stream.feed(part) for part in sent.splitlines(keepends=True))
        out += stream.flush()
        assert _fragments(out, TOKEN) == [], (offset, out)
        straddles = limit - len(TOKEN) < limit + offset < limit
        if straddles and cut is _cut_by_buildyard_worker:
            assert out == line.replace(TOKEN, "<token>") + "\n"  # the cut line is joined


def test_a_long_secret_straddles_several_cuts() -> None:
    limit = 16
    secret = "".join(chr(ord("A") + i % 26) for i in range(50))
    redactor = Redactor(cut_length=limit)
    redactor.add(secret, "long")
    line = "xyz" + secret + "xyz"
    stream = redactor.stream()
    out = "".join(stream.feed(part) for part in _cut_by_buildyard_worker(line, limit).split("\n"))
    out += stream.flush()
    assert out == "xyz<long>xyz"


def test_a_cut_is_only_after_a_line_long_enough() -> None:
    redactor = _redactor(cut_length=4096)
    stream = redactor.stream()
    # a short line ends in a real newline: nothing is held back for a continuation (its
    # pieces of the secret are hidden all the same, each as what a cut left)
    assert stream.feed("ghp_T0KEN\n") == "<token>\n"
    assert stream.held == 0
    assert stream.feed("/abc+123==\n") == "<token>\n"


def test_what_a_lossy_cut_leaves_of_a_secret_is_hidden() -> None:
    """buildbot-worker 4.3.0 can lose thousands of characters at a cut: the line before ends
    with the start of the secret, or the line after begins with its end, alone."""
    stream = _redactor().stream()
    out = stream.feed("x" * 30 + TOKEN[:9] + "\n\n" + TOKEN[4:] + " end\n")
    assert out == "x" * 30 + "<token>\n\n<token> end\n"
    # a piece too short to be told from ordinary text stays
    assert stream.feed(TOKEN[:6] + "\n") == TOKEN[:6] + "\n"
    # in the middle of a line, a piece is not torn by a cut
    assert stream.feed("a " + TOKEN[:9] + " b\n") == "a " + TOKEN[:9] + " b\n"

"""Checking a password against one line of an Apache ``.htpasswd`` file (``util.HTPasswdAuth``).

The formats ``htpasswd`` writes: bcrypt (``-B``, ``$2y$``; the ``bcrypt`` package checks it),
Apache's MD5 (the default, ``$apr1$``), SHA-1 (``-s``, ``{SHA}``) and, where Python still has
its ``crypt`` module (before 3.13), the system's ``crypt()`` (``-d``). MD5 and SHA-1 are done
with the standard library: they are short, fixed algorithms.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["apr1", "check", "entries", "scheme"]

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_APR1 = b"$apr1$"


def _crypt() -> Callable[[str, str], str] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # Python 3.13 removed it
        return None
    return crypt.crypt  # type: ignore[no-any-return,unused-ignore]


def _to64(value: int, count: int) -> str:
    out = []
    for _ in range(count):
        out.append(_ITOA64[value & 0x3F])
        value >>= 6
    return "".join(out)


def apr1(password: bytes, salt: bytes) -> str:
    """Apache's MD5-based hash of ``password`` (``$apr1$<salt>$<hash>``; 1000 rounds)."""
    salt = salt[:8]
    final = hashlib.md5(password + salt + password).digest()
    ctx = password + _APR1 + salt
    for left in range(len(password), 0, -16):
        ctx += final[: min(16, left)]
    bits = len(password)
    while bits:
        ctx += b"\0" if bits & 1 else password[:1]
        bits >>= 1
    final = hashlib.md5(ctx).digest()
    for i in range(1000):
        step = password if i & 1 else final
        if i % 3:
            step += salt
        if i % 7:
            step += password
        step += final if i & 1 else password
        final = hashlib.md5(step).digest()
    text = "".join(
        _to64(final[a] << 16 | final[b] << 8 | final[c], 4)
        for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))
    )
    text += _to64(final[11], 2)
    return f"$apr1${salt.decode('ascii', 'replace')}${text}"


def scheme(hashed: str) -> str | None:
    """The format of a stored hash (``bcrypt``, ``apr1``, ``sha1``, ``crypt``), or None when
    this server cannot check it."""
    if hashed.startswith(("$2y$", "$2a$", "$2b$")):
        return "bcrypt"
    if hashed.startswith("$apr1$"):
        return "apr1"
    if hashed.startswith("{SHA}"):
        return "sha1"
    if len(hashed) == 13 and all(c in _ITOA64 for c in hashed) and _crypt() is not None:
        return "crypt"
    return None


def check(password: str, hashed: str) -> bool:
    """Whether ``password`` is the one ``hashed`` was made from (constant-time comparisons)."""
    secret = password.encode("utf-8")
    kind = scheme(hashed)
    if kind == "bcrypt":
        import bcrypt  # only files with bcrypt lines need the binding

        try:
            # bcrypt reads 72 bytes of a password (htpasswd -B hashes those), and the binding
            # refuses longer ones
            return bcrypt.checkpw(secret[:72], hashed.encode("ascii"))
        except ValueError:  # a malformed hash
            return False
    if kind == "apr1":
        salt = hashed[len(_APR1) :].partition("$")[0].encode("ascii", "replace")
        return hmac.compare_digest(apr1(secret, salt), hashed)
    if kind == "sha1":
        digest = base64.b64encode(hashlib.sha1(secret).digest()).decode("ascii")
        return hmac.compare_digest("{SHA}" + digest, hashed)
    if kind == "crypt":
        crypt = _crypt()
        return crypt is not None and hmac.compare_digest(crypt(password, hashed), hashed)
    return False


def entries(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(line number, user, hash)`` of each entry of the file (OSError if it cannot be read);
    blank lines and ``#`` comments are skipped, as are lines without a ``:``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#") or ":" not in text:
            continue
        user, _, hashed = text.partition(":")
        yield number, user, hashed

"""Credential checkers for ``c['www']['change_hook_auth']`` (HTTP Basic auth on the hooks).

Buildbot takes a list of Twisted ``ICredentialsChecker``; master.cfg files build them with
``twisted.cred.strcred.makeChecker("file:changehook.passwd")`` or the classes of
``twisted.cred.checkers``. While master.cfg loads, those names give these classes (buildyard
does not use Twisted): each has ``check(username, password) -> bool``.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from buildyard.common.errors import caller_location, config_error


class InMemoryUsernamePasswordDatabaseDontUse:
    """Users and passwords given in master.cfg: ``(alice="secret", ...)``."""

    def __init__(self, **users: str | bytes) -> None:
        self.users = {
            name: value.encode() if isinstance(value, str) else value
            for name, value in users.items()
        }

    def addUser(self, username: str | bytes, password: str | bytes) -> None:
        name = username.decode() if isinstance(username, bytes) else username
        self.users[name] = password.encode() if isinstance(password, str) else password

    def check(self, username: str, password: str) -> bool:
        expected = self.users.get(username)
        return expected is not None and hmac.compare_digest(expected, password.encode())

    def __repr__(self) -> str:
        return f"InMemoryUsernamePasswordDatabaseDontUse({sorted(self.users)})"


class FilePasswordDB:
    """A file of ``user:password`` lines (``#`` starts a comment), read at each check, as
    Twisted's ``FilePasswordDB`` does without ``cache``. Plain passwords only: a ``hash``
    function is not supported."""

    def __init__(
        self,
        filename: str | Path,
        delim: bytes | str = b":",
        usernameField: int = 0,
        passwordField: int = 1,
        caseSensitive: bool = True,
        hash: object = None,
        cache: bool = False,
    ) -> None:
        if hash is not None:
            raise ValueError("FilePasswordDB: a 'hash' function is not supported by buildyard")
        self.filename = Path(filename)
        self.delim = delim.decode() if isinstance(delim, bytes) else delim
        self.username_field = usernameField
        self.password_field = passwordField
        self.case_sensitive = caseSensitive

    def _users(self) -> dict[str, str]:
        users: dict[str, str] = {}
        for line in self.filename.read_text(encoding="utf-8").splitlines():
            if not line or line.lstrip().startswith("#"):
                continue
            parts = line.split(self.delim)
            try:
                name, password = parts[self.username_field], parts[self.password_field]
            except IndexError:
                continue
            users[name if self.case_sensitive else name.lower()] = password
        return users

    def check(self, username: str, password: str) -> bool:
        try:
            users = self._users()
        except OSError:
            return False
        expected = users.get(username if self.case_sensitive else username.lower())
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def __repr__(self) -> str:
        return f"FilePasswordDB({str(self.filename)!r})"


def makeChecker(description: str) -> InMemoryUsernamePasswordDatabaseDontUse | FilePasswordDB:
    """``twisted.cred.strcred.makeChecker``: ``"file:PATH"`` or ``"memory:USER:PASS:..."``."""
    kind, _, rest = description.partition(":")
    if kind == "file":
        path = Path(rest)
        if not path.is_absolute():
            # relative to master.cfg's directory (where Buildbot's master runs)
            where = caller_location()
            path = (Path(where.file).parent if where else Path.cwd()) / path
        if not path.is_file():
            config_error(f"makeChecker({description!r}): {str(path)!r} is not a file")
        return FilePasswordDB(path)
    if kind == "memory":
        parts = rest.split(":")
        if len(parts) % 2:
            raise ValueError(f"makeChecker({description!r}): give user:password pairs")
        pairs = dict(zip(parts[::2], parts[1::2], strict=True))
        return InMemoryUsernamePasswordDatabaseDontUse(**pairs)
    raise ValueError(
        f"makeChecker({description!r}): buildyard has the 'file:' and 'memory:' checkers only"
    )

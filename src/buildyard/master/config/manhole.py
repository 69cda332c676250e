"""Buildbot's manholes (``util.PasswordManhole``, ``util.AuthorizedKeysManhole``,
``util.TelnetManhole``; ``from buildbot import manhole``), accepted so that a master.cfg that
sets ``c['manhole']`` loads.

buildyard has no manhole: no Python shell into the running master is ever opened and nothing
listens on the manhole's port. These classes only check Buildbot 4.3's arguments (a wrong one is
a configuration error naming the class and the argument); ``c['manhole']`` set to one of them is
named in a warning at checkconfig, start and reconfig (:mod:`.no_effect`).
"""

from __future__ import annotations

from buildyard.common.config_object import ConfigObject
from buildyard.common.errors import config_error

__all__ = ["AuthorizedKeysManhole", "PasswordManhole", "TelnetManhole"]


class _Manhole(ConfigObject):
    """What the three manholes share: the port (an int, or a strports string such as
    ``"tcp:1234:interface=127.0.0.1"``, as Buildbot's)."""

    def _check_port(self, port: object) -> None:
        if isinstance(port, bool) or not isinstance(port, int | str) or port == "":
            config_error(
                f"{type(self).__name__}: port must be a port number or a strports string "
                f"such as 'tcp:1234:interface=127.0.0.1', not {port!r}"
            )
        self.port = f"tcp:{port}" if isinstance(port, int) else port

    def _check_text(self, keyword: str, value: object, *, optional: bool = False) -> None:
        if optional and value is None:
            return
        if not isinstance(value, str | bytes):
            config_error(
                f"{type(self).__name__}: {keyword} must be a string, not {type(value).__name__}"
            )


class TelnetManhole(_Manhole):
    """Buildbot's ``TelnetManhole(port, username, password)``; nothing listens."""

    _secret_arguments = frozenset({"password"})

    def __init__(self, port: object, username: object, password: object) -> None:
        self._check_port(port)
        self._check_text("username", username)
        self._check_text("password", password)
        self.username = username


class PasswordManhole(_Manhole):
    """Buildbot's ``PasswordManhole(port, username, password, ssh_hostkey_dir)``; nothing
    listens."""

    _secret_arguments = frozenset({"password"})

    def __init__(
        self, port: object, username: object, password: object, ssh_hostkey_dir: object
    ) -> None:
        self._check_port(port)
        self._check_text("username", username)
        self._check_text("password", password)
        # Buildbot takes a None (or empty) directory as telnet instead of SSH
        self._check_text("ssh_hostkey_dir", ssh_hostkey_dir, optional=True)
        self.username = username
        self.ssh_hostkey_dir = ssh_hostkey_dir


class AuthorizedKeysManhole(_Manhole):
    """Buildbot's ``AuthorizedKeysManhole(port, keyfile, ssh_hostkey_dir)``; nothing
    listens."""

    def __init__(self, port: object, keyfile: object, ssh_hostkey_dir: object) -> None:
        self._check_port(port)
        self._check_text("keyfile", keyfile)
        self._check_text("ssh_hostkey_dir", ssh_hostkey_dir, optional=True)
        self.keyfile = keyfile
        self.ssh_hostkey_dir = ssh_hostkey_dir

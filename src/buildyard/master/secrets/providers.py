"""Secret providers for ``c['secretsProviders']``, and the lookup a build renders with.

``secrets.SecretInAFile(dirname, suffixes=None, strip=True)``: one secret per file of the
directory, named by the file name (less the suffix). As with Buildbot, files readable by
others are a config error, and the files are read when the configuration is loaded (a reconfig
reads them again).

A provider is anything with ``get(name)`` returning the value (or an awaitable of it), or None
when it does not know the secret; the first provider that knows it wins.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from buildyard.common.awaitables import resolve
from buildyard.common.config_object import ConfigObject
from buildyard.common.errors import config_error

__all__ = ["SecretInAFile", "lookup"]


class SecretInAFile(ConfigObject):
    def __init__(
        self, dirname: str, suffixes: Sequence[str] | None = None, strip: bool = True
    ) -> None:
        self.dirname = dirname
        self.suffixes = list(suffixes) if suffixes is not None else [""]
        self.strip = strip
        self.secrets: dict[str, str] = {}
        directory = Path(dirname)
        if not directory.is_dir():
            config_error(f"SecretInAFile: directory {dirname} does not exist")
            return
        for path in sorted(directory.iterdir()):
            suffix = next((s for s in self.suffixes if path.name.endswith(s)), None)
            if suffix is None or not path.is_file():
                continue
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o007 and os.name == "posix":
                config_error(
                    f"SecretInAFile: permissions {oct(mode)} on file {path.name} are too open; "
                    "secret files must not be accessible by others"
                )
                continue
            value = path.read_text(encoding="utf-8")
            if self.strip:
                value = value.rstrip("\r\n")
            self.secrets[path.name[: len(path.name) - len(suffix)] if suffix else path.name] = value

    def get(self, name: str) -> str | None:
        return self.secrets.get(name)


async def lookup(providers: Sequence[Any], name: str) -> str | None:
    """The value of secret ``name`` from the first provider that knows it."""
    for provider in providers:
        value = provider.get(name)
        value = await resolve(value)
        if value is not None:
            return str(value)
    return None

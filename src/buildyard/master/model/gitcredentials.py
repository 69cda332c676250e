"""``util.GitCredentialOptions`` and ``util.GitCredentialInputRenderer``: credentials for git.

``GitCredentialOptions(credentials=[...], use_http_path=None)`` is what the ``Git`` step and the
``GitPoller`` take as ``git_credentials``: each item of ``credentials`` is one description in
the input format of ``git credential`` (``key=value`` lines: ``url``, ``username``,
``password``, ...), a string or a renderable (a ``Secret``, an ``Interpolate``, or a
``GitCredentialInputRenderer``). ``use_http_path`` sets git's ``credential.useHttpPath``.

``GitCredentialInputRenderer(url=..., username=..., password=...)`` renders its keywords, each
maybe a renderable, into such a description: one ``key=value`` line per keyword that is not
None, ``url`` first (``git credential`` resets the other fields when it reads ``url``).

``auth_credentials=(username, password)`` is the short form: :func:`with_user_password` turns it
into one more description, for the repository's URL, ahead of the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from buildyard.master.model.properties import Properties, _RenderableConfig, render

__all__ = ["GitCredentialInputRenderer", "GitCredentialOptions", "with_user_password"]


class GitCredentialInputRenderer(_RenderableConfig):
    """One credential description for ``git credential approve``, rendered."""

    _secret_arguments = frozenset({"password", "credential_attributes"})

    def __init__(self, **credential_attributes: Any) -> None:
        self.credential_attributes = dict(credential_attributes)

    async def _rendering_for(self, props: Properties) -> Any:
        keys = sorted(self.credential_attributes, key=lambda k: k != "url")
        lines: list[str] = []
        for key in keys:
            value = await render(self.credential_attributes[key], props)
            if value is not None:
                lines.append(f"{key}={value}\n")
        return "".join(lines)


class GitCredentialOptions(NamedTuple):
    """Credentials for git's credential store, and its ``credential.useHttpPath``."""

    credentials: Sequence[Any]
    use_http_path: bool | None = None


def with_user_password(
    auth_credentials: Any, url: Any, options: GitCredentialOptions | None
) -> GitCredentialOptions:
    """``options`` with ``auth_credentials`` (a (username, password) pair) first, for ``url``."""
    username, password = auth_credentials
    first = GitCredentialInputRenderer(url=url, username=username, password=password)
    if options is None:
        return GitCredentialOptions(credentials=[first])
    return GitCredentialOptions(
        credentials=[first, *options.credentials], use_http_path=options.use_http_path
    )

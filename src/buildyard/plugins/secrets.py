"""``secrets``: secret providers for ``c['secretsProviders']`` (used by ``util.Secret`` and
``Interpolate('%(secret:name)s')``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from buildyard.plugins._namespace import SECRETS, LazyNames

if TYPE_CHECKING:
    from buildyard.master.secrets.providers import SecretInAFile

__all__ = ["SecretInAFile"]

# Buildbot 4.3's names in this namespace.
_NAMES = [
    "HashiCorpVaultKvSecretProvider",
    "SecretInAFile",
    "SecretInPass",
    "VaultAuthenticatorApprole",
    "VaultAuthenticatorToken",
]

# Each name is resolved when master.cfg first uses it (buildyard.plugins._namespace.LazyNames):
# the implemented ones from these modules, the others as stand-ins until buildyard has them.
_LAZY = LazyNames(
    "secrets",
    store=globals(),
    known=_NAMES,
    sources={
        "SecretInAFile": "buildyard.master.secrets.providers",
    },
    features=SECRETS,
)


def __getattr__(name: str) -> Any:
    return _LAZY.resolve(name)


def __dir__() -> list[str]:
    return _LAZY.names()

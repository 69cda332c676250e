"""``secrets``: secret providers for ``c['secretsProviders']`` (used by ``util.Secret`` and
``Interpolate('%(secret:name)s')``)."""

from __future__ import annotations

from typing import Any

from buildyard.master.secrets.providers import SecretInAFile
from buildyard.plugins._namespace import SECRETS, placeholders, unknown_name

__all__ = ["SecretInAFile"]

# Buildbot 4.3's names in this namespace.
_NAMES = [
    "HashiCorpVaultKvSecretProvider",
    "SecretInAFile",
    "SecretInPass",
    "VaultAuthenticatorApprole",
    "VaultAuthenticatorToken",
]

# Every name not imported above is a stand-in until buildyard implements it.
globals().update(placeholders("secrets", {n: SECRETS for n in _NAMES if n not in globals()}))


def __getattr__(name: str) -> Any:
    raise unknown_name("secrets", name, _NAMES)

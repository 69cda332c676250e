"""A CustomAuth subclass with a ``userInfoProvider`` (a ``UserInfoProviderBase`` subclass), as
real master.cfg files write it: the provider's details join the user's after a login."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from buildyard.master.config.loader import load_master_config
from buildyard.master.model.properties import Secret
from buildyard.master.www.auth import CustomAuth, UserInfoProviderBase, UserPasswordAuth

CFG = """\
from buildbot.plugins import util, worker
from buildbot.www import auth
from twisted.internet import defer


class Provider(auth.UserInfoProviderBase):
    def getUserInfo(self, username):
        return defer.succeed({'email': username + '@example.org', 'groups': ['devs']})


class SiteAuth(auth.CustomAuth):
    def __init__(self):
        super().__init__()
        self.userInfoProvider = Provider()

    def check_credentials(self, user, password):
        return password == 'right'


c = BuildmasterConfig = {}
c['workers'] = [worker.Worker('w', 'pw')]
c['protocols'] = {'pb': {'port': 0}}
c['builders'] = [util.BuilderConfig(name='b', workernames=['w'], factory=util.BuildFactory())]
c['www'] = {'port': 0, 'auth': SiteAuth()}
"""


def test_a_provider_from_master_cfg_adds_its_details(tmp_path: Path) -> None:
    (tmp_path / "master.cfg").write_text(CFG)
    config = load_master_config(tmp_path)
    auth: Any = config.www["auth"]

    assert asyncio.run(auth.authenticate("ann", "wrong")) is None
    details = asyncio.run(auth.authenticate("ann", "right"))
    assert details == {"username": "ann", "email": "ann@example.org", "groups": ["devs"]}


def test_a_plain_provider_and_none() -> None:
    class Plain(CustomAuth):
        def check_credentials(self, user: str, password: str) -> bool:
            return True

    # no provider: Buildbot's default details (the email is the username)
    assert asyncio.run(Plain().authenticate("bob", "x")) == {
        "username": "bob",
        "email": "bob",
        "groups": [],
    }
    with_base = Plain()
    with_base.userInfoProvider = UserInfoProviderBase()
    assert asyncio.run(with_base.authenticate("bob", "x")) == {
        "username": "bob",
        "email": "bob",
        "groups": [],
    }

    class Sync(UserInfoProviderBase):
        def getUserInfo(self, username: str) -> object:  # noqa: N802 - Buildbot's name
            return {"full_name": "Bob B."}

    with_sync = Plain()
    with_sync.userInfoProvider = Sync()
    synced = asyncio.run(with_sync.authenticate("bob", "x"))
    assert synced is not None
    assert synced["full_name"] == "Bob B."


async def test_a_provider_answering_with_a_deferred_fired_later() -> None:
    # Twisted-style providers answer with a Deferred; awaiting an unfired one directly fails
    # ("Task got bad yield"), so it goes through the awaitables helper
    from twisted.internet import defer

    class Plain(CustomAuth):
        def check_credentials(self, user: str, password: str) -> bool:
            return True

    class Later(UserInfoProviderBase):
        def getUserInfo(self, username: str) -> object:  # noqa: N802 - Buildbot's name
            d: defer.Deferred[dict[str, str]] = defer.Deferred()
            asyncio.get_running_loop().call_later(0.01, d.callback, {"full_name": "Bob L."})
            return d

    auth = Plain()
    auth.userInfoProvider = Later()
    details = await auth.authenticate("bob", "x")
    assert details is not None
    assert details["full_name"] == "Bob L."


def test_a_provider_adds_its_details_to_users_whose_password_is_a_secret() -> None:
    """UserPasswordAuth with a password given as a secret (looked up at login) still gets the
    provider's details, as a plain password does: authz roles may depend on its groups."""

    class Groups(UserInfoProviderBase):
        def getUserInfo(self, username: str) -> object:  # noqa: N802 - Buildbot's name
            return {"groups": ["admins"]}

    async def lookup(name: str) -> str | None:
        return {"ann_pw": "s3cret"}.get(name)

    auth = UserPasswordAuth({"ann": Secret("ann_pw"), "bob": "plain"})
    auth.userInfoProvider = Groups()
    auth.bind_secrets(lookup)
    for user, password in (("ann", "s3cret"), ("bob", "plain")):
        details = asyncio.run(auth.authenticate(user, password))
        assert details == {"username": user, "email": user, "groups": ["admins"]}
    assert asyncio.run(auth.authenticate("ann", "wrong")) is None

"""util.GitCredentialInputRenderer and GitCredentialOptions: what git credential approve reads."""

from __future__ import annotations

from buildyard.master.model.gitcredentials import (
    GitCredentialInputRenderer,
    GitCredentialOptions,
    with_user_password,
)
from buildyard.master.model.properties import Interpolate, Secret, render
from tests.master.model._context import BuildContext, props_for


async def test_the_url_comes_first_and_none_is_left_out() -> None:
    context = BuildContext(secrets={"pw": "hunter2"})
    props = props_for(context, user="ann")
    renderer = GitCredentialInputRenderer(
        username=Interpolate("%(prop:user)s"), password=Secret("pw"), path=None, url="https://h/r"
    )
    assert await render(renderer, props) == "url=https://h/r\nusername=ann\npassword=hunter2\n"
    assert context.secrets_asked == ["pw"]
    # the secret is hidden wherever the build's text is redacted, and in repr
    assert props.redact("hunter2") == "<pw>"
    assert "hunter2" not in repr(GitCredentialInputRenderer(password="hunter2"))


async def test_auth_credentials_become_the_first_credential() -> None:
    other = "url=https://other\nusername=x\npassword=y\n"
    options = with_user_password(
        ("ann", "pw"), "https://h/r", GitCredentialOptions([other], use_http_path=True)
    )
    assert options.use_http_path is True
    first, second = options.credentials
    assert second == other
    assert await render(first, props_for(BuildContext())) == (
        "url=https://h/r\nusername=ann\npassword=pw\n"
    )
    alone = with_user_password(("ann", "pw"), "https://h/r", None)
    assert len(alone.credentials) == 1
    assert alone.use_http_path is None

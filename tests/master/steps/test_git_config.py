"""steps.Git as master.cfg builds it: keywords, configuration errors, names and descriptions."""

from __future__ import annotations

from typing import Any

import pytest

from buildyard.common.errors import ConfigError
from buildyard.master.model.properties import Interpolate, Property
from buildyard.master.steps.source.git import Git, scp_style_to_url_syntax


def test_defaults_follow_buildbot() -> None:
    step = Git(repourl="https://example.org/r.git")
    assert step.name == "git"
    assert step.branch == "HEAD"
    assert step.mode == "incremental"
    assert step.method is None
    assert step.workdir is None
    assert step.haltOnFailure is True
    assert step.flunkOnFailure is True
    assert step.timeout == 20 * 60
    assert step.getCurrentSummary() == {"step": "updating"}
    assert step.getResultSummary() == {"step": "update"}


def test_a_codebase_names_the_step_and_suffixes_its_description() -> None:
    step = Git(repourl="r", codebase="lib", name="checkout")
    assert step.name == "checkout-lib"
    assert step.getResultSummary() == {"step": "update lib"}
    rendered: Any = Git(repourl="r", codebase=Property("cb")).name
    assert isinstance(rendered, Interpolate)


def test_each_build_gets_a_copy_built_from_the_same_arguments() -> None:
    step = Git(repourl="r", mode="full", method="copy", shallow=False, retry=(1, 2))
    copy = step.copy()
    assert copy is not step
    assert isinstance(copy, Git)
    assert (copy.mode, copy.method, copy.retry) == ("full", "copy", (1.0, 2))
    assert copy == step


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "must provide repourl"),
        ({"repourl": "r", "mode": "fast"}, "mode must be full or incremental"),
        ({"repourl": "r", "mode": "full", "method": "wipe"}, "invalid method for mode 'full'"),
        (
            {"repourl": "r", "mode": "full", "method": "fresh", "shallow": True},
            "shallow only possible with method 'clobber'",
        ),
        ({"repourl": "r", "getDescription": "yes"}, "getDescription must be a boolean or a dict"),
        ({"repourl": "r", "sshHostKey": "ssh-ed25519 AAAA"}, "sshPrivateKey must be provided"),
        ({"repourl": "r", "sshKnownHosts": "h k"}, "sshPrivateKey must be provided"),
        (
            {"repourl": "r", "sshPrivateKey": "K", "sshHostKey": "k", "sshKnownHosts": "h k"},
            "only one of sshKnownHosts and sshHostKey",
        ),
        ({"repourl": "r", "auth_credentials": ("u",)}, "auth_credentials must be a (username"),
        ({"repourl": "r", "git_credentials": ["x"]}, "must be a util.GitCredentialOptions"),
        ({"repourl": "r", "retry": 3}, "retry must be a (delay, repeats) pair"),
        ({"repourl": "r", "config": ["a=b"]}, "config must be a dict"),
        ({"repourl": "r", "hurry": True}, "unexpected keyword argument"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Git(**kwargs)
    assert message in raised.value.message


def test_accepted_combinations() -> None:
    # shallow goes with full/clobber, and with any mode whose method is left to its default
    Git(repourl="r", mode="full", method="clobber", shallow=5)
    Git(repourl="r", mode="incremental", shallow=True)
    Git(repourl="r", mode="full", shallow=True)
    # renderable mode and method are checked when the build renders them
    Git(repourl=Property("url"), mode=Property("m"), method=Property("x"), shallow=True)
    Git(repourl="r", getDescription={"tags": True, "abbrev": 0}, config={"core.autocrlf": "false"})


@pytest.mark.parametrize(
    ("mode", "method", "expected"),
    [
        ("incremental", None, None),
        ("incremental", "clobber", None),
        ("full", None, "fresh"),
        ("full", "clean", "clean"),
        ("full", "copy", "copy"),
    ],
)
def test_method_defaults(mode: str, method: str | None, expected: str | None) -> None:
    assert Git(repourl="r", mode=mode, method=method)._getMethod() == expected


def test_scp_style_addresses_become_urls_with_the_port() -> None:
    assert scp_style_to_url_syntax("git@host:org/r.git", 2222) == "ssh://git@host:2222/org/r.git"
    assert scp_style_to_url_syntax("https://host/r.git") == "https://host/r.git"
    assert scp_style_to_url_syntax("/srv/r.git") == "/srv/r.git"
    assert scp_style_to_url_syntax("C:\\repos\\r") == "C:\\repos\\r"

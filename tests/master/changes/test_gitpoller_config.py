"""GitPoller as master.cfg writes it: Buildbot's keywords, defaults and configuration errors."""

from __future__ import annotations

from typing import Any

import pytest

from buildyard.common.errors import ConfigError, ConfigErrors, collecting_config_errors
from buildyard.master.changes.gitpoller import GitPoller
from buildyard.plugins import changes

URL = "https://example.org/repo.git"


def errors_of(*args: Any, **kwargs: Any) -> list[str]:
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        GitPoller(*args, **kwargs)
    return [e.message for e in errors.errors]


def test_defaults_follow_buildbot() -> None:
    poller = GitPoller(URL)
    assert poller.name == URL  # Buildbot names the change source after the repository
    assert poller.branches is None  # the remote HEAD's branch
    assert poller.workdir == "gitpoller-work"
    assert poller.poll_interval == 600
    assert not poller.poll_at_launch
    assert poller.usetimestamps
    assert poller.project == ""
    assert poller.category is None
    assert poller.gitbin == "git"
    assert poller.encoding == "utf-8"


def test_branch_is_a_list_of_one() -> None:
    assert GitPoller(URL, branch="main").branches == ["main"]
    assert GitPoller(URL, branches=["a", "b"]).branches == ["a", "b"]
    # as older Buildbots did, a full branch ref names the branch
    assert GitPoller(URL, branches=["refs/heads/a"]).branches == ["a"]
    assert GitPoller(URL, branches=True).branches is True


def test_only_tags_watches_the_tags() -> None:
    branches = GitPoller(URL, only_tags=True).branches
    assert callable(branches)
    assert branches("refs/tags/v1")
    assert not branches("refs/heads/main")


def test_equal_arguments_make_equal_configs() -> None:
    assert GitPoller(URL, branch="main") == GitPoller(repourl=URL, branch="main")
    assert GitPoller(URL, branch="main") != GitPoller(URL, branch="dev")
    assert GitPoller(URL, name="n").name == "n"


def test_the_plugin_name_and_buildbot_module_are_this_class() -> None:
    assert changes.GitPoller is GitPoller


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "GitPoller: repourl must be given, as a non-empty string"),
        ({"repourl": ""}, "GitPoller: repourl must be given, as a non-empty string"),
        (
            {"repourl": URL, "branch": "a", "branches": ["b"]},
            "GitPoller: can't specify both branch and branches",
        ),
        (
            {"repourl": URL, "only_tags": True, "branch": "a"},
            "GitPoller: can't specify only_tags and branch/branches",
        ),
        ({"repourl": URL, "branch": 3}, "GitPoller: 'branch' argument must be a str"),
        (
            {"repourl": URL, "branches": "main"},
            "GitPoller: 'branches' argument must be one of list of str, True, or "
            "Callable[[str], bool]",
        ),
        (
            {"repourl": URL, "fetch_refspec": "+refs/heads/*:refs/remotes/origin/*"},
            "GitPoller: fetch_refspec is no longer supported. Instead, only the given branches "
            "are downloaded.",
        ),
        ({"repourl": URL, "pollInterval": -1}, "interval must be >= 0: -1"),
        ({"repourl": URL, "pollInterval": "often"}, "GitPoller: pollInterval must be a number"),
        (
            {"repourl": URL, "pollRandomDelayMin": 5, "pollRandomDelayMax": 1},
            "min random delay must be <= 1: 5",
        ),
        (
            {"repourl": URL, "pollInterval": 10, "pollRandomDelayMax": 10},
            "max random delay must be < 10: 10",
        ),
        (
            {"repourl": URL, "sshHostKey": "ssh-ed25519 AAAA"},
            "GitPoller: sshPrivateKey must be provided in order use sshHostKey",
        ),
        (
            {"repourl": URL, "codebase": "cb"},
            "GitPoller: codebase must be None or instance of Codebase",
        ),
        (
            {"repourl": URL, "auth_credentials": ("user",)},
            "GitPoller: auth_credentials must be a (username, password) pair",
        ),
        (
            {"repourl": URL, "sshPrivateKey": 42},
            "GitPoller: sshPrivateKey must be a string or a renderable",
        ),
        (
            {"repourl": URL, "git_credentials": [("u", "p")]},
            "GitPoller: git_credentials must be a util.GitCredentialOptions",
        ),
        ({"repourl": URL, "category": 3}, "GitPoller: category must be a string"),
    ],
)
def test_mistakes_are_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    found = errors_of(**kwargs)
    assert any(m.startswith(message) for m in found), found


def test_the_first_mistake_raises_outside_a_load() -> None:
    with pytest.raises(ConfigError, match="can't specify both branch and branches"):
        GitPoller(URL, branch="a", branches=["b"])


def test_arguments_after_repourl_are_keywords_as_in_buildbot() -> None:
    with pytest.raises(TypeError):
        GitPoller(URL, ["main"])  # type: ignore[call-arg]


def test_secrets_are_hidden_in_repr() -> None:
    shown = repr(GitPoller(URL, auth_credentials=("user", "hunter2")))
    assert "hunter2" not in shown
    assert "auth_credentials=<hidden>" in shown

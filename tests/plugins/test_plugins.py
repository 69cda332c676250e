"""buildyard.plugins: Buildbot's master.cfg namespaces, with Buildbot's names."""

from __future__ import annotations

import configparser
import importlib

import pytest

import buildyard.plugins
from buildyard.common.config_object import is_placeholder
from buildyard.common.errors import ConfigError
from buildyard.master.builds.builder import BuilderConfig
from buildyard.master.builds.factory import BuildFactory
from buildyard.master.model.results import Results
from buildyard.master.workers.config import Worker
from buildyard.plugins import changes, schedulers, secrets, steps, util, worker
from tests.master.config._files import buildbot_site_packages

NAMESPACES = (
    "changes",
    "reporters",
    "schedulers",
    "secrets",
    "steps",
    "util",
    "webhooks",
    "worker",
)


def test_star_import_gives_buildbots_namespaces() -> None:
    namespace: dict[str, object] = {}
    exec("from buildyard.plugins import *", namespace)
    assert {k for k in namespace if not k.startswith("__")} == set(NAMESPACES)
    assert buildyard.plugins.__all__ == list(NAMESPACES)


def test_implemented_names_are_the_real_classes() -> None:
    assert worker.Worker is Worker
    assert util.BuilderConfig is BuilderConfig
    assert util.BuildFactory is BuildFactory
    assert [util.SUCCESS, util.WARNINGS, util.FAILURE, util.SKIPPED] == [0, 1, 2, 3]
    assert [util.EXCEPTION, util.RETRY, util.CANCELLED] == [4, 5, 6]
    assert util.FAILURE is Results.FAILURE
    assert util.Results[util.FAILURE] == "failure"
    assert list(util.Results) == [
        "success",
        "warnings",
        "failure",
        "skipped",
        "exception",
        "retry",
        "cancelled",
    ]
    for name in ("Worker", "BuilderConfig", "BuildFactory"):
        assert not is_placeholder(getattr(util if name != "Worker" else worker, name))


def test_worst_status_follows_buildbot() -> None:
    assert util.worst_status(util.SUCCESS, util.FAILURE) == util.FAILURE
    assert util.worst_status(util.SKIPPED, util.SUCCESS) == util.SUCCESS
    assert util.worst_status(util.EXCEPTION, util.CANCELLED) == util.CANCELLED
    assert util.worst_status(util.RETRY, util.EXCEPTION) == util.RETRY
    assert util.worst_status(util.WARNINGS, None) == util.WARNINGS
    assert util.worst_status(None, None) is None


@pytest.mark.parametrize(
    ("namespace", "name", "feature"),
    [
        (steps, "P4", "steps"),
        (changes, "MaildirSource", "change sources"),
        (util, "OldBuildCanceller", "build configuration helpers"),
        (util, "WorkerChoiceParameter", "build configuration helpers"),
        (util, "LdapUserInfo", "web authentication, users and manholes"),
        (util, "AvatarGravatar", "web authentication, users and manholes"),
        (secrets, "SecretInPass", "secret providers"),
    ],
)
def test_not_implemented_names_say_which_feature(
    namespace: object, name: str, feature: str
) -> None:
    cls = getattr(namespace, name)
    assert is_placeholder(cls)
    ns = getattr(namespace, "__name__", "").rpartition(".")[2]
    with pytest.raises(ConfigError) as info:
        cls()
    # the missing feature by name, not an issue number a user cannot look up
    assert info.value.message == f"{ns}.{name} is not implemented yet ({feature})"


def test_dotted_util_names() -> None:
    assert util.svn.split_file_branches("trunk/a.c") == (None, "a.c")
    assert is_placeholder(util.repo.DownloadsFromChangeSource)
    with pytest.raises(AttributeError, match="did you mean 'split_file_branches'"):
        _ = util.svn.split_file_branch


@pytest.mark.parametrize(
    ("namespace", "name", "suggestion"),
    [
        (steps, "ShellComand", "ShellCommand"),
        (util, "Renderer", "renderer"),
        (util, "BuilderConfg", "BuilderConfig"),
        (worker, "worker", "Worker"),
        (schedulers, "Forcescheduler", "ForceScheduler"),
    ],
)
def test_unknown_names_suggest_the_closest(namespace: object, name: str, suggestion: str) -> None:
    with pytest.raises(AttributeError, match=f"did you mean '{suggestion}'"):
        getattr(namespace, name)


def test_unknown_name_with_nothing_close() -> None:
    with pytest.raises(AttributeError, match=r"neither Buildbot nor buildyard knows it\)$"):
        _ = steps.Zzzzzzzz


def test_every_buildbot_plugin_name_is_known() -> None:
    """Each name Buildbot 4.3 registers in these namespaces exists here (real or stand-in)."""
    entry_points = configparser.ConfigParser(delimiters=("=",))
    entry_points.optionxform = str  # type: ignore[assignment,method-assign]
    dist_infos = sorted(buildbot_site_packages().glob("buildbot-*.dist-info/entry_points.txt"))
    assert dist_infos, "Buildbot's entry_points.txt not found"
    entry_points.read(dist_infos[-1])
    checked = 0
    for namespace in NAMESPACES:
        module = importlib.import_module(f"buildyard.plugins.{namespace}")
        for name in entry_points[f"buildbot.{namespace}"]:
            target: object = module
            for part in name.split("."):
                target = getattr(target, part)
            checked += 1
    assert checked > 250

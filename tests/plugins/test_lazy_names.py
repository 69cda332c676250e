"""The vocabulary resolves each name on first use: importing it imports none of the steps,
reporters, change sources or workers it names, and every name still resolves as before."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

from buildyard.common.config_object import is_placeholder

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


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_every_name_resolves_to_its_source(namespace: str) -> None:
    module = importlib.import_module(f"buildyard.plugins.{namespace}")
    lazy = module._LAZY
    names = dir(module)
    assert set(module.__all__) <= set(names)
    assert set(lazy.sources) == set(module.__all__)  # the implemented names are the exported ones
    for name in names:
        value = getattr(module, name)
        assert getattr(module, name) is value  # one object, every time
        source = lazy.sources.get(name)
        if source is None:
            assert is_placeholder(value) or name in ("repo", "svn"), f"{namespace}.{name}"
            continue
        module_name, _, attribute = source.partition(":")
        assert value is getattr(importlib.import_module(module_name), attribute or name)
        assert not is_placeholder(value), f"{namespace}.{name}"


# Modules of things a master.cfg names: not one is imported until master.cfg uses it.
_NOT_BEFORE_USE = [
    "buildyard.master.reporters.mail",
    "buildyard.master.reporters.github",
    "buildyard.master.reporters.irc",
    "buildyard.master.steps.shell",
    "buildyard.master.steps.source.git",
    "buildyard.master.changes.gitpoller",
    "buildyard.master.workers.docker",
    "buildyard.master.workers.ec2",
    "buildyard.master.workers.kubernetes",
    "buildyard.master.schedulers.timed",
    "buildyard.master.www.authz",
]

_PROBE = textwrap.dedent(
    """
    import sys
    from buildyard.plugins import *
    watched = {watched!r}
    print(sorted(m for m in watched if m in sys.modules))
    reporters.MailNotifier, steps.ShellCommand, util.Authz, worker.DockerLatentWorker
    print(sorted(m for m in watched if m in sys.modules))
    """
)


def test_importing_the_vocabulary_imports_what_it_names_only_when_used() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(watched=_NOT_BEFORE_USE)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1] == str(
        sorted(
            [
                "buildyard.master.reporters.mail",
                "buildyard.master.steps.shell",
                "buildyard.master.www.authz",
                "buildyard.master.workers.docker",
            ]
        )
    )

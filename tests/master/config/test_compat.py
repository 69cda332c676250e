"""The import shim: Buildbot's module paths, answered by buildyard while master.cfg loads."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
import types

import pytest

from buildyard.master.config.compat import (
    MODULES,
    Buildbot08Module,
    BuildbotImportError,
    UnsupportedBuildbotModule,
    buildbot_imports,
)
from buildyard.master.workers.config import Worker
from buildyard.plugins import steps, util


def _buildbot_modules() -> list[str]:
    return [m for m in sys.modules if m == "buildbot" or m.startswith("buildbot.")]


def test_every_module_of_the_table_imports_with_every_name() -> None:
    with buildbot_imports():
        for name, spec in MODULES.items():
            module = importlib.import_module(name)
            for attribute in spec.names:
                assert getattr(module, attribute) is not None, f"{name}.{attribute}"
            assert sorted(module.__all__) == sorted(spec.names)
    assert _buildbot_modules() == []


def test_same_objects_as_the_plugins() -> None:
    with buildbot_imports():
        from buildbot.config import BuilderConfig  # type: ignore[import-not-found]
        from buildbot.plugins import steps as bb_steps  # type: ignore[import-not-found]
        from buildbot.plugins import util as bb_util
        from buildbot.process import results  # type: ignore[import-not-found]
        from buildbot.steps.shell import ShellCommand  # type: ignore[import-not-found]
        from buildbot.worker import Worker as BuildbotWorker  # type: ignore[import-not-found]

    assert ShellCommand is steps.ShellCommand
    assert bb_steps is steps
    assert bb_util is util
    assert BuilderConfig is util.BuilderConfig
    assert BuildbotWorker is Worker
    assert results.Results[results.FAILURE] == "failure"
    assert results.statusToString(None) == "not finished"
    with buildbot_imports():
        from buildbot.util.git_credential import (  # type: ignore[import-not-found]
            GitCredentialOptions,
        )
    assert GitCredentialOptions is util.GitCredentialOptions


def test_star_import_of_buildbot_plugins() -> None:
    namespace: dict[str, object] = {}
    with buildbot_imports():
        exec("from buildbot.plugins import *", namespace)
    assert {k for k in namespace if not k.startswith("__")} == {
        "changes",
        "reporters",
        "schedulers",
        "secrets",
        "steps",
        "util",
        "webhooks",
        "worker",
    }


@pytest.mark.parametrize(
    ("module", "error", "text"),
    [
        ("buildbot.frobnicator", UnsupportedBuildbotModule, "not a Buildbot module buildyard"),
        ("buildbot.steps.shel", UnsupportedBuildbotModule, "did you mean buildbot.steps.shell?"),
        ("buildbot.db.connector", UnsupportedBuildbotModule, "through buildbot.plugins"),
        ("buildbot.status.web.auth", Buildbot08Module, "buildbot.status is from Buildbot 0.8"),
        ("buildbot.buildslave", Buildbot08Module, "slaves became workers"),
        ("buildbot.steps.slave", Buildbot08Module, "use buildbot.steps.worker"),
    ],
)
def test_unknown_paths_fail_clearly(
    module: str, error: type[BuildbotImportError], text: str
) -> None:
    with (
        buildbot_imports(),
        pytest.raises(error, match=text.replace(".", r"\.").replace("?", r"\?")),
    ):
        importlib.import_module(module)
    assert issubclass(error, ImportError)  # `except ImportError:` in master.cfg still works
    assert _buildbot_modules() == []


def test_unknown_name_in_a_known_module() -> None:
    with buildbot_imports():
        shell = importlib.import_module("buildbot.steps.shell")

        with pytest.raises(AttributeError, match="did you mean 'ShellCommand'"):
            _ = shell.ShellComand
        with pytest.raises(ImportError, match="cannot import name 'Nope'"):
            exec("from buildbot.steps.shell import Nope", {})


def test_sys_modules_and_meta_path_are_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    real = types.ModuleType("buildbot")
    real_sub = types.ModuleType("buildbot.process")
    monkeypatch.setitem(sys.modules, "buildbot", real)
    monkeypatch.setitem(sys.modules, "buildbot.process", real_sub)
    meta_path = list(sys.meta_path)

    with buildbot_imports():
        assert "buildbot" not in sys.modules
        importlib.import_module("buildbot.process.results")

        assert sys.modules["buildbot"] is not real
        with pytest.raises(RuntimeError):
            raise RuntimeError("the block fails")

    assert sys.modules["buildbot"] is real
    assert sys.modules["buildbot.process"] is real_sub
    assert [m for m in _buildbot_modules() if m not in ("buildbot", "buildbot.process")] == []
    assert sys.meta_path == meta_path


def test_fresh_modules_for_every_load() -> None:
    with buildbot_imports():
        first = importlib.import_module("buildbot.plugins")
    with buildbot_imports():
        second = importlib.import_module("buildbot.plugins")

    assert first is not second
    assert first.util is second.util


def test_the_cred_stand_ins_sit_in_the_real_twisted_package_and_leave_with_the_load() -> None:
    """With Twisted installed (the test extra has it), ``twisted`` and ``twisted.cred`` are
    Twisted's own; ``strcred`` is buildyard's, and goes when the load ends."""
    import twisted

    from buildyard.master.changes.hooks import credentials

    with buildbot_imports():
        strcred = importlib.import_module("twisted.cred.strcred")
        assert strcred.makeChecker is credentials.makeChecker
        assert sys.modules["twisted"] is twisted
    assert sys.modules.get("twisted.cred.strcred") is not strcred
    assert getattr(sys.modules.get("twisted.cred"), "strcred", None) is not strcred


class _NoTwisted:
    """A finder that makes Twisted unimportable, as if the extra were not installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".", maxsplit=1)[0] == "twisted":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def test_importing_twisted_without_it_names_the_extra() -> None:
    from buildyard.compat.twisted import TwistedExtraMissing

    blocker = _NoTwisted()
    sys.meta_path.insert(0, blocker)
    try:
        with (
            buildbot_imports(),
            pytest.raises(TwistedExtraMissing, match=r"pip install 'buildyard\[twisted\]'"),
        ):
            importlib.import_module("twisted.words.protocols.irc")
    finally:
        sys.meta_path.remove(blocker)
    assert "twisted.words" not in sys.modules


def test_cred_and_interfaces_leave_the_twisted_adapter_off_until_users_code_needs_it() -> None:
    """In a fresh process (Twisted installed, not imported yet): master.cfg's
    ``twisted.cred.strcred`` (which loads Twisted's own ``twisted`` package) and
    ``buildbot.interfaces.IRenderable`` (which loads zope.interface for buildyard) do not turn
    the Twisted adapter on; an import of ``zope`` by users' code does."""
    script = textwrap.dedent(
        """
        import importlib, sys
        from buildyard.compat import twisted as adapter
        from buildyard.master.config.compat import buildbot_imports
        assert "twisted" not in sys.modules and "zope" not in sys.modules
        with buildbot_imports():
            importlib.import_module("twisted.cred.strcred")
            importlib.import_module("twisted.cred.checkers")
        print("cred", adapter.is_active())
        with buildbot_imports():
            from buildbot.interfaces import IRenderable
        print("interfaces", adapter.is_active(), "zope" in sys.modules)
        with buildbot_imports():
            importlib.import_module("zope.interface.verify")
        print("users zope", adapter.is_active())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split("\n")
    assert out[:3] == ["cred False", "interfaces False True", "users zope True"], out

"""Loading master.cfg: run it, read ``BuildmasterConfig``, check it, freeze it.

:func:`load_master_config` runs master.cfg in a fresh namespace (``__file__`` and ``basedir``
set, the basedir on ``sys.path``, ``import buildbot...`` answered by
:mod:`buildyard.master.config.compat`) inside a :func:`collecting_config_errors` scope, so
every mistake of the file is found in one run. It raises :class:`ConfigErrors` with all of
them, each with its file and line, or returns a :class:`MasterConfig`; a bad configuration
never reaches a master.

Afterwards ``sys.path`` is as it was and the modules master.cfg imported from its basedir are
forgotten, so the next load (a reconfig) reads them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from buildyard.common.errors import (
    ConfigError,
    ConfigErrors,
    Location,
    collecting_config_errors,
    config_error,
)
from buildyard.compat.twisted import TwistedExtraMissing
from buildyard.master.config.assignments import KeyLines, find_key_lines
from buildyard.master.config.compat import BuildbotImportError, buildbot_imports
from buildyard.master.config.keys import read_config
from buildyard.master.config.master_config import MasterConfig
from buildyard.master.config.references import check_references

__all__ = ["load_master_config"]

_PACKAGE_DIR = Path(__file__).resolve().parents[2]


def load_master_config(basedir: Path, filename: str = "master.cfg") -> MasterConfig:
    """Load ``basedir/filename``; raise :class:`ConfigErrors` with every mistake it has."""
    basedir = Path(basedir).resolve()
    path = basedir / filename
    if not basedir.is_dir():
        raise ConfigErrors([ConfigError(f"basedir {basedir} does not exist")])
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigErrors([ConfigError(f"configuration file {path} does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigErrors([ConfigError(f"cannot read configuration file {path}: {exc}")]) from exc

    errors = ConfigErrors()
    warnings: list[str] = []
    config: MasterConfig | None = None
    with collecting_config_errors(
        errors, user_files=(str(path),), user_dirs=(str(basedir),), warnings=warnings
    ):
        namespace = _execute(path, source, basedir, errors)
        if namespace is not None:
            config = _read(namespace, path, source)
    if errors:
        # An object built outside master.cfg's frames (a builder given as a dict) reports
        # without a line; point those at the file rather than nowhere.
        somewhere = Location(file=str(path), line=1)
        located = [
            e if e.location else ConfigError(e.message, location=somewhere) for e in errors.errors
        ]
        # In file order, master.cfg first: the order an operator reads and fixes them in.
        failed = ConfigErrors(sorted(located, key=_reading_order(path)))
        failed.warnings = tuple(warnings)
        raise failed
    assert config is not None
    return dataclasses.replace(config, warnings=tuple(warnings))


def _reading_order(path: Path) -> Callable[[ConfigError], tuple[bool, str, int]]:
    def key(error: ConfigError) -> tuple[bool, str, int]:
        where = error.location
        assert where is not None
        return (where.file != str(path), where.file, where.line)

    return key


def _execute(path: Path, source: str, basedir: Path, errors: ConfigErrors) -> dict[str, Any] | None:
    """Run master.cfg; its namespace, or None when it did not run to the end."""
    filename = str(path)
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        config_error(_describe(exc), location=_syntax_location(exc, path))
        return None
    # No __name__, as in Buildbot: classes master.cfg defines get "builtins" for a module,
    # which (unlike a made-up name) is in sys.modules when dataclasses or pickle look for it.
    namespace: dict[str, Any] = {"__file__": filename, "basedir": str(basedir)}
    with _basedir_modules(basedir), buildbot_imports():
        try:
            exec(code, namespace)
        except ConfigErrors as exc:  # buildbot.config.error(..., always_raise=True)
            where = _failing_line(exc.__traceback__, path, basedir)
            items: list[object] = list(exc.errors)
            for item in items:
                if isinstance(item, ConfigError):
                    errors.add(item.message, location=item.location or where)
                else:  # Buildbot's ConfigErrors carries plain strings
                    errors.add(str(item), location=where)
            return None
        except SyntaxError as exc:  # in a module master.cfg imports
            config_error(_describe(exc), location=_syntax_location(exc, path))
            return None
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise
        except BaseException as exc:  # SystemExit too: master.cfg must not end the master
            config_error(_describe(exc), location=_failing_line(exc.__traceback__, path, basedir))
            return None
    return namespace


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BuildbotImportError | TwistedExtraMissing):
        return str(exc)
    if isinstance(exc, SyntaxError):
        return f"syntax error: {exc.msg}"
    return f"{type(exc).__name__}: {exc}"


def _syntax_location(exc: SyntaxError, path: Path) -> Location:
    return Location(file=exc.filename or str(path), line=exc.lineno or 1)


def _is_user_file(filename: str, basedir: Path, path: Path | None = None) -> bool:
    """master.cfg itself (``path``, wherever a symlink takes it), or a file under ``basedir``."""
    resolved = Path(filename).resolve()
    if path is not None and resolved == path.resolve():
        return True
    return resolved.is_relative_to(basedir) and not resolved.is_relative_to(_PACKAGE_DIR)


def _failing_line(tb: TracebackType | None, path: Path, basedir: Path) -> Location:
    """The innermost line of the user's files (master.cfg or a module next to it) in ``tb``."""
    found = Location(file=str(path), line=1)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if _is_user_file(filename, basedir, path):
            found = Location(file=filename, line=tb.tb_lineno)
        tb = tb.tb_next
    return found


@contextlib.contextmanager
def _basedir_modules(basedir: Path) -> Iterator[None]:
    """``basedir`` on ``sys.path`` for the block; the modules imported from it forgotten after."""
    saved_path = sys.path[:]
    before = set(sys.modules)
    sys.path.append(str(basedir))
    importlib.invalidate_caches()  # master.cfg's neighbours may have changed since last time
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - before:
            module = sys.modules.get(name)
            files = [getattr(module, "__file__", None), *getattr(module, "__path__", ())]
            if any(isinstance(f, str) and _is_user_file(f, basedir) for f in files):
                del sys.modules[name]


def _read(namespace: dict[str, Any], path: Path, source: str) -> MasterConfig | None:
    lines = find_key_lines(source, str(path))
    if "BuildmasterConfig" not in namespace:
        config_error(
            f"{path.name} does not define BuildmasterConfig",
            location=Location(file=str(path), line=1),
        )
        return None
    config_dict = namespace["BuildmasterConfig"]
    if not isinstance(config_dict, dict):
        config_error(
            f"BuildmasterConfig must be a dict, not {type(config_dict).__name__}",
            location=lines.location(),
        )
        return None
    _run_configurators(config_dict, lines)
    config = read_config(config_dict, lines, path)
    check_references(
        workers=_listed(config_dict.get("workers")),
        builders=config.builders,
        schedulers=config.schedulers,
        change_sources=config.change_sources,
        machines=_listed(config_dict.get("machines")),
        protocols=config.protocols,
        multi_master=config.multi_master,
        lines=lines,
    )
    return config


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _run_configurators(config_dict: dict[Any, Any], lines: KeyLines) -> None:
    """Buildbot's ``c['configurators']``: each may rewrite the dict before it is read."""
    for configurator in _listed(config_dict.get("configurators")):
        configure = getattr(configurator, "configure", None)
        if not callable(configure):
            config_error(
                f"c['configurators'] must contain configurators, not {configurator!r}",
                location=lines.location("configurators"),
            )
            continue
        try:
            configure(config_dict)
        except Exception as exc:
            config_error(
                f"configurator {configurator!r} failed: {type(exc).__name__}: {exc}",
                location=lines.location("configurators"),
            )

"""The root of every buildyard exception, and the collector of configuration errors.

Tree::

    BuildyardError
    ├── ConfigError            one mistake in a master.cfg (carries file and line)
    │   └── ConfigErrors       every mistake of one load, raised once, all together
    ├── master.db.errors.DbError
    │   └── ... (see that module)
    └── master.data.errors.DataError
        └── ... (see that module)

Configuration errors are collected, not raised one at a time: while master.cfg loads, the loader
opens a :func:`collecting_config_errors` scope and every constructor of the config vocabulary
calls :func:`config_error`, which records the mistake with the master.cfg line that caused it.
Outside such a scope :func:`config_error` raises at once, so the classes still fail loudly when
used from plain Python.

The same scope carries what one load reports only once (:func:`first_report`: "this class is not
implemented yet" for the fifth use of the class) and the warnings of the load
(:func:`config_warning`: accepted, but worth telling the operator).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import os
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path


class BuildyardError(Exception):
    """Root of every exception buildyard raises on purpose."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """Where in a user's file something was written."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class ConfigError(BuildyardError):
    """One mistake in the configuration."""

    def __init__(self, message: str, *, location: Location | None = None) -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class ConfigErrors(BuildyardError):
    """Every configuration mistake found in one load; raised once with all of them."""

    def __init__(self, errors: list[ConfigError] | None = None) -> None:
        self.errors: list[ConfigError] = list(errors or [])
        # what the same load noticed short of an error (e.g. an ignored PB port)
        self.warnings: tuple[str, ...] = ()
        super().__init__()

    def add(self, message: str, *, location: Location | None = None) -> None:
        self.errors.append(ConfigError(message, location=location))

    def __bool__(self) -> bool:
        return bool(self.errors)

    def __len__(self) -> int:
        return len(self.errors)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class ConfigWarning(UserWarning):
    """A configuration warning issued outside a :func:`collecting_config_errors` scope."""


@functools.lru_cache(maxsize=1024)
def _resolved(filename: str) -> str:
    # resolving is a handful of syscalls, and every config object asks for the same few files
    try:
        return str(Path(filename).resolve())
    except OSError:
        return filename


@dataclasses.dataclass(slots=True)
class _Scope:
    errors: ConfigErrors
    user_files: tuple[str, ...]
    user_dirs: tuple[str, ...] = ()
    # keys already reported once in this load (see first_report)
    seen: set[str] = dataclasses.field(default_factory=set)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def is_user_file(self, filename: str) -> bool:
        resolved = _resolved(filename)
        if resolved in self.user_files:
            return True
        # buildyard's own files never count, even when a master's basedir holds them
        return not resolved.startswith(_PACKAGE_DIR + os.sep) and any(
            resolved.startswith(d + os.sep) for d in self.user_dirs
        )


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar(
    "buildyard_config_scope", default=None
)

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


@contextlib.contextmanager
def collecting_config_errors(
    errors: ConfigErrors,
    *,
    user_files: tuple[str, ...] = (),
    user_dirs: tuple[str, ...] = (),
    warnings: list[str] | None = None,
) -> Iterator[ConfigErrors]:
    """Collect :func:`config_error` calls into ``errors`` for the duration of the block.

    ``user_files`` are the paths whose frames count as "the user's line", and so is every file
    under one of ``user_dirs`` (a master's basedir, with the modules master.cfg imports from it);
    any frame outside the buildyard package counts when both are empty. :func:`config_warning`
    appends to ``warnings`` when it is given.
    """
    scope = _Scope(
        errors,
        tuple(str(Path(f).resolve()) for f in user_files),
        tuple(str(Path(d).resolve()) for d in user_dirs),
    )
    if warnings is not None:
        scope.warnings = warnings
    token = _scope.set(scope)
    try:
        yield errors
    finally:
        _scope.reset(token)


@functools.lru_cache(maxsize=4096)
def _location(file: str, line: int) -> Location:
    """One :class:`Location` per place: the 10,000 builders a comprehension makes on one line of
    master.cfg share it (it is frozen)."""
    return Location(file=file, line=line)


def caller_location(skip_package: bool = True) -> Location | None:
    """The innermost stack frame that belongs to the user's configuration, not to buildyard."""
    scope = _scope.get()
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if scope is not None and (scope.user_files or scope.user_dirs):
            if scope.is_user_file(filename):
                return _location(filename, frame.f_lineno)
        elif not (skip_package and filename.startswith(_PACKAGE_DIR)) and not filename.startswith(
            "<frozen"
        ):
            return _location(filename, frame.f_lineno)
        frame = frame.f_back
    return None


def config_error(message: str, *, location: Location | None = None) -> None:
    """Report one configuration mistake: recorded when collecting, raised otherwise."""
    where = location or caller_location()
    scope = _scope.get()
    if scope is None:
        raise ConfigError(message, location=where)
    scope.errors.add(message, location=where)


def config_warning(message: str, *, location: Location | None = None) -> None:
    """Report something accepted but worth telling: recorded when collecting, warned otherwise."""
    where = location or caller_location()
    scope = _scope.get()
    text = f"{where}: {message}" if where else message
    if scope is None:
        warnings.warn(text, ConfigWarning, stacklevel=2)
    else:
        scope.warnings.append(text)


def first_report(key: str) -> bool:
    """True the first time ``key`` is seen in the open scope (always True outside a scope).

    For mistakes reported once per load however often they are made.
    """
    scope = _scope.get()
    if scope is None:
        return True
    if key in scope.seen:
        return False
    scope.seen.add(key)
    return True
